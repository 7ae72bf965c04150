// kafkajs over SASL/PLAIN on TLS: produce COUNT records to TOPIC, then read
// them back in a fresh group; run by tests/integration/test_security.py.
//
//   node tests/js/sasl_plain.js BOOTSTRAP CA_PEM USER PASSWORD TOPIC COUNT
//
// Prints {"produced": N, "consumed": [values]} as its last stdout line; on an
// error prints {"error": {name, type, message}} and exits 1.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, caPath, username, password, topic, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!bootstrap || !caPath || !username || !topic || !(count > 0)) {
  console.error('usage: node sasl_plain.js BOOTSTRAP CA_PEM USER PASSWORD TOPIC COUNT');
  process.exit(2);
}

const kafka = new Kafka({
  clientId: 'sluice-kafkajs-sasl',
  brokers: [bootstrap],
  ssl: { ca: [fs.readFileSync(caPath, 'utf-8')] },
  sasl: { mechanism: 'plain', username, password },
  connectionTimeout: 5000,
  requestTimeout: 30000,
  retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, label, log }) => {
    process.stderr.write(`[kafkajs ${label}] ${namespace}: ${log.message}\n`);
  },
});

async function main() {
  const producer = kafka.producer();
  await producer.connect();
  const messages = Array.from({ length: count }, (_, i) => ({ value: `js-${i}` }));
  await producer.send({ topic, messages });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const consumed = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${consumed.length} of ${count}`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        consumed.push(message.value.toString());
        if (consumed.length >= count) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ produced: count, consumed }));
}

main().catch((error) => {
  console.log(JSON.stringify({ error: { name: error.name, type: error.type, message: error.message } }));
  process.exit(1);
});
