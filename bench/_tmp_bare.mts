import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, AckPolicy } from '@nats-io/jetstream';
import { startNatsServer } from '../test/support/nats-server.ts';
import { createNatsBus } from '../src/bus/nats.ts';
import { runRawBus } from './pipeline.ts';
import { drive } from './stats.ts';
import { createEnvelope } from '../src/core/index.ts';
const server = await startNatsServer();
const n = Number(process.argv[2] ?? 4000);
const enc = new TextEncoder(), dec = new TextDecoder();
async function bare() {
  const nc = await connect({ servers: server.url, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc); const js = jetstream(nc);
  const p = `bare${Date.now()}`;
  await jsm.streams.add({ name: p.toUpperCase(), subjects: [`${p}.>`], duplicate_window: 120e9 });
  const lat: number[] = []; const sentAt = new Map<string, number>();
  for (let hop = 0; hop <= 6; hop++) {
    await jsm.consumers.add(p.toUpperCase(), { durable_name: `h${hop}`, filter_subject: `${p}.h${hop}`, ack_policy: AckPolicy.Explicit, max_ack_pending: 64 });
    const c = await js.consumers.get(p.toUpperCase(), `h${hop}`);
    await c.consume({ max_messages: 64, callback: (m) => {
      const env = JSON.parse(dec.decode(m.data));
      if (hop === 6) { lat.push(performance.now() - sentAt.get(env.id)!); m.ack(); return; }
      js.publish(`${p}.h${hop + 1}`, enc.encode(JSON.stringify(env)), { msgID: `${env.id}:${hop}` }).then(() => m.ack());
    } });
  }
  const { elapsedMs } = await drive({ events: n, offeredPerSec: 0, completed: () => lat.length, send: async (i) => {
    const env = createEnvelope({ type: 'external.chat.message.v1', source: { platform: 'bench', channel: 'bench', channelId: '1' }, user: { id: `u${i % 100}`, name: `viewer${i % 100}`, displayName: 'Viewer', profileImageUrl: '', role: 'viewer' }, payload: { text: `message number ${i} with a little text in it` }, message: { id: `m${i}`, text: `message number ${i} with a little text in it` }, routingSlip: [] } as any);
    sentAt.set(env.id, performance.now());
    await js.publish(`${p}.h0`, enc.encode(JSON.stringify(env)), { msgID: env.id });
  } });
  await nc.close();
  return { eventsPerSec: Math.round(lat.length / elapsedMs * 1000) };
}
const which = process.argv[3] ?? 'both';
if (which !== 'mine') console.log('bare', await bare());
if (which !== 'bare') { const bus = await createNatsBus({ servers: server.url, prefix: `r${Date.now()}.` }); await bus.connect(); console.log('mine raw', await runRawBus(bus, n, 0)); await bus.close(); }
await server.stop(); process.exit(0);
