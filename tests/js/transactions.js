// kafkajs transactions against a broker; run by
// tests/integration/test_transactions.py.
//
//   node tests/js/transactions.js BOOTSTRAP TOPIC SOURCE GROUP TRANSACTIONAL_ID
//
// A transactional producer commits c0..c2 to partitions 0..2 of TOPIC with
// the offset 4 of SOURCE partition 0 for GROUP (sendOffsets), then aborts
// a0..a2 with offset 9, then a read_committed consumer (readUncommitted:
// false, the default) in its own group reads TOPIC from the beginning.
// Prints {"committed": [values read]} as the last line of stdout; kafkajs
// logs go to stderr. Exits 1 on any error.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, source, group, transactionalId] = process.argv.slice(2);
if (!transactionalId) {
  console.error('usage: node transactions.js BOOTSTRAP TOPIC SOURCE GROUP TRANSACTIONAL_ID');
  process.exit(2);
}

const kafka = new Kafka({
  clientId: 'sluice-kafkajs-transactions',
  brokers: [bootstrap],
  connectionTimeout: 5000,
  requestTimeout: 30000,
  retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, label, log }) => {
    const { message, ...rest } = log;
    process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(rest)}\n`);
  },
});

async function transaction(producer, prefix, offset, commit) {
  const txn = await producer.transaction();
  for (let partition = 0; partition < 3; partition++) {
    await txn.send({ topic, messages: [{ value: `${prefix}${partition}`, partition }] });
  }
  await txn.sendOffsets({
    consumerGroupId: group,
    topics: [{ topic: source, partitions: [{ partition: 0, offset: String(offset) }] }],
  });
  await (commit ? txn.commit() : txn.abort());
}

async function main() {
  const producer = kafka.producer({ transactionalId, maxInFlightRequests: 1, idempotent: true });
  await producer.connect();
  await transaction(producer, 'c', 4, true);
  await transaction(producer, 'a', 9, false);
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${group}-reader`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await consumer.run({ eachMessage: async ({ message }) => { values.push(message.value.toString()); } });
  // Read until the three committed values came, then a little longer: an
  // aborted record would show up in that time.
  const deadline = Date.now() + 60000;
  while (values.length < 3 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await consumer.disconnect();
  console.log(JSON.stringify({ committed: values }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
