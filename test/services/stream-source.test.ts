import { describe, expect, it } from 'vitest';
import { findStreamSource } from '../../src/services/stream-source.js';
import type { SourceState } from '../../src/store/index.js';

function storeOf(sources: SourceState[]) {
  return {
    getSource: async (id: string) => sources.find((source) => source.id === id),
    listSources: async () => sources,
  };
}

const live: SourceState = { id: 'twitch:streamer', platform: 'twitch', streamStatus: 'online', metadata: { game: 'Celeste' } };
const other: SourceState = { id: 'twitch:someone_else', platform: 'twitch', streamStatus: 'offline' };
const renamed: SourceState = {
  id: 'twitch:old_login',
  platform: 'twitch',
  streamStatus: 'online',
  displayName: 'NewName',
  metadata: { login: 'newname' },
};

describe('findStreamSource', () => {
  it("finds a channel's own document, with or without the # and whatever the case", async () => {
    const store = storeOf([other, live]);
    expect(await findStreamSource(store, { platform: 'twitch', channel: '#Streamer' })).toBe(live);
    expect(await findStreamSource(store, { platform: 'twitch', channel: 'someone_else' })).toBe(other);
  });

  it('finds a document kept under the channel id', async () => {
    const byId: SourceState = { id: 'discord:99887766', platform: 'discord', streamStatus: 'online' };
    expect(await findStreamSource(storeOf([live, byId]), { platform: 'discord', channel: 'general', channelId: '99887766' })).toBe(byId);
  });

  it('finds a document by its display name or login when its id has an older name', async () => {
    expect(await findStreamSource(storeOf([live, renamed]), { platform: 'twitch', channel: 'newname' })).toBe(renamed);
  });

  it("never gives a stream channel another channel's state", async () => {
    expect(await findStreamSource(storeOf([live, other]), { platform: 'twitch', channel: 'nobody' })).toBeUndefined();
  });

  it('gives a message from outside a stream the Twitch channel of its name, else the live source, else one with a known state', async () => {
    expect(await findStreamSource(storeOf([other, live]), { platform: 'api', channel: 'someone_else' })).toBe(other);
    expect(await findStreamSource(storeOf([other, live]), { platform: 'api', channel: 'console' })).toBe(live);
    expect(await findStreamSource(storeOf([other]), { platform: 'api', channel: '' })).toBe(other);
    expect(
      await findStreamSource(storeOf([{ id: 'twitch:x', platform: 'twitch' }]), { platform: 'api', channel: 'console' }),
    ).toBeUndefined();
  });
});
