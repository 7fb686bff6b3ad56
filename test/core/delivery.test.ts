import { describe, expect, it } from 'vitest';
import { createEnvelope, createReply, DeliveryReason, type Envelope } from '../../src/core/index.js';
import { deliverDiscordReply } from '../../src/platforms/discord/index.js';
import { deliverKickReply } from '../../src/platforms/kick/index.js';
import { DeliveryReason as TwitchDeliveryReason } from '../../src/platforms/twitch/egress.js';

const replyOn = (platform: string): Envelope =>
  createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform, channel: 'x', channelId: '10' },
    extra: { message: { id: '1', text: 'q' }, candidates: [createReply('test', 'hi')], qos: { maxResponseMs: 30_000 } },
  });

describe('delivery reasons', () => {
  it('are defined once, in core, and Twitch egress hands out that same table', () => {
    expect(TwitchDeliveryReason).toBe(DeliveryReason);
    expect(Object.values(DeliveryReason)).toEqual([
      'RATE_LIMITED',
      'DEADLINE',
      'SEND_FAILED',
      'NOT_CONNECTED',
      'NOT_CONFIGURED',
      'NO_REPLY',
      'UNSUPPORTED_PLATFORM',
      'DUPLICATE',
      'CANCELLED',
    ]);
  });

  it('are the words Discord and Kick record when they cannot deliver', async () => {
    expect((await deliverDiscordReply(replyOn('discord'), undefined)).envelope.delivery?.reason).toBe(DeliveryReason.NOT_CONFIGURED);
    expect((await deliverKickReply(replyOn('kick'), undefined)).envelope.delivery?.reason).toBe(DeliveryReason.NOT_CONFIGURED);
    expect((await deliverKickReply(replyOn('discord'), undefined)).envelope.delivery?.reason).toBe(DeliveryReason.UNSUPPORTED_PLATFORM);
  });
});
