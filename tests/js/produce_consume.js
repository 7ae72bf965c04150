// kafkajs producer and consumer against a broker; run by
// tests/integration/test_clients_produce_fetch.py.
//
//   node tests/js/produce_consume.js produce BOOTSTRAP TOPIC COUNT CODEC
//   node tests/js/produce_consume.js consume BOOTSTRAP TOPIC COUNT GROUP
//
// produce: COUNT keyed records (key k<i>, value v<i>-<i % 37 'x's>, a header
// on every 10th) with an idempotent producer (acks -1), CODEC none or gzip, in
// sendBatch calls of 500; prints {"metadata": [...]} (what the broker answered).
// consume: a consumer in GROUP subscribes from the beginning and collects COUNT
// records; prints {"records": [{partition, offset, key, value, headers}]}.
// The Python test asserts on the JSON (last line of stdout); kafkajs logs go to
// stderr. Exits 1 on any error.
'use strict';

const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [mode, bootstrap, topic, countArg, extra] = process.argv.slice(2);
const count = Number(countArg);
if (!['produce', 'consume'].includes(mode) || !bootstrap || !topic || !(count > 0) || !extra) {
  console.error('usage: node produce_consume.js produce|consume BOOTSTRAP TOPIC COUNT CODEC|GROUP');
  process.exit(2);
}

const stderrLogger = () => ({ namespace, label, log }) => {
  const { message, ...rest } = log;
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(rest)}\n`);
};

const kafka = new Kafka({
  clientId: 'sluice-kafkajs-produce-consume',
  brokers: [bootstrap],
  connectionTimeout: 5000,
  requestTimeout: 30000,
  // KAFKAJS_RETRIES: a longer budget where a test kills a leader (the new one
  // comes only after broker.session.timeout.ms, later on a loaded machine).
  retry: { retries: Number(process.env.KAFKAJS_RETRIES || 5), initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.WARN,
  logCreator: stderrLogger,
});

const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };

function record(i) {
  const m = { key: `k${i}`, value: `v${i}-${'x'.repeat(i % 37)}` };
  if (i % 10 === 0) m.headers = { h: `${i}` };
  return m;
}

async function produce(codec) {
  if (!(codec in CODECS)) throw new Error(`codec ${codec}: kafkajs has none, gzip built in`);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  const metadata = [];
  try {
    // KAFKAJS_SEND_PARTITIONS=N: each send goes to one partition (send k to
    // partition k mod N). kafkajs 2.2.4 loses a send's records when it retries
    // after a leader died and the partition's new leader already answered the
    // same send for its own partitions: it skips that broker (sendMessages
    // keeps one response per broker; tulios/kafkajs#1303). A test that kills
    // a leader keeps each send to one broker so that it tests the broker.
    const sendPartitions = Number(process.env.KAFKAJS_SEND_PARTITIONS || 0);
    for (let start = 0; start < count; start += 500) {
      const messages = [];
      for (let i = start; i < Math.min(count, start + 500); i++) messages.push(record(i));
      if (sendPartitions > 0) {
        for (const m of messages) m.partition = (start / 500) % sendPartitions;
      }
      const answer = await producer.send({ topic, acks: -1, compression: CODECS[codec], messages });
      metadata.push(...answer);
    }
  } finally {
    await producer.disconnect();
  }
  return { metadata };
}

async function consume(group) {
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    allowAutoTopicCreation: false,
  });
  const records = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out with ${records.length} of ${count} records`)),
        90000,
      );
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            const headers = {};
            for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v.toString();
            records.push({
              partition,
              offset: Number(message.offset),
              key: message.key === null ? null : message.key.toString(),
              value: message.value === null ? null : message.value.toString(),
              headers,
            });
            if (records.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return { records };
}

(mode === 'produce' ? produce(extra) : consume(extra))
  .then((result) => {
    process.stdout.write(JSON.stringify(result) + '\n');
  })
  .catch((e) => {
    console.error(`produce_consume.js ${mode} failed:`, e);
    process.exit(1);
  });
