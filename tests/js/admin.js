// kafkajs admin checks against a broker; run by tests/integration/test_kafkajs.py.
//
//   node tests/js/admin.js BOOTSTRAP TOPIC_PREFIX
//
// Runs a fixed sequence of admin operations and prints one JSON object to
// stdout: {steps: {name: {ok: true, value} | {ok: false, error}}}. The Python
// test asserts on it. kafkajs logs go to stderr. Exits 0 unless the script
// itself crashed.
'use strict';

const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs');

const [bootstrap, prefix] = process.argv.slice(2);
if (!bootstrap || !prefix) {
  console.error('usage: node admin.js BOOTSTRAP TOPIC_PREFIX');
  process.exit(2);
}

const stderrLogger = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log;
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(extra)}\n`);
};

const kafka = new Kafka({
  clientId: 'sluice-kafkajs-test',
  brokers: [bootstrap],
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
  logCreator: stderrLogger,
});

const describeError = (e) => ({
  name: e.name,
  type: e.type,
  message: e.message,
  errors: Array.isArray(e.errors)
    ? e.errors.map((x) => ({ name: x.name, type: x.type, message: x.message }))
    : undefined,
});

async function main() {
  const admin = kafka.admin({ retry: { retries: 2 } });
  const steps = {};
  const step = async (name, fn) => {
    try {
      const value = await fn();
      steps[name] = { ok: true, value: value === undefined ? null : value };
    } catch (e) {
      steps[name] = { ok: false, error: describeError(e) };
    }
  };

  const configured = `${prefix}-configured`;
  const plain = `${prefix}-plain`;

  await admin.connect();
  try {
    await step('describeCluster', () => admin.describeCluster());
    await step('createTopics', () =>
      admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic: configured,
            numPartitions: 3,
            replicationFactor: 1,
            configEntries: [
              { name: 'retention.ms', value: '3600000' },
              { name: 'cleanup.policy', value: 'compact' },
            ],
          },
          { topic: plain, numPartitions: 1, replicationFactor: 1 },
        ],
      }),
    );
    await step('listTopics', () => admin.listTopics());
    await step('fetchTopicMetadata', () => admin.fetchTopicMetadata({ topics: [configured, plain] }));
    await step('describeConfigsTopic', () =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: configured }],
      }),
    );
    await step('describeConfigsTopicFiltered', () =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: plain, configNames: ['cleanup.policy'] }],
      }),
    );
    const cluster = steps.describeCluster.ok ? steps.describeCluster.value : null;
    const nodeId = cluster && cluster.brokers.length ? String(cluster.brokers[0].nodeId) : '1';
    await step('describeConfigsBroker', () =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.BROKER, name: nodeId }],
      }),
    );
    await step('createPartitions', () =>
      admin.createPartitions({ topicPartitions: [{ topic: configured, count: 5 }] }),
    );
    await step('fetchTopicMetadataAfterCreatePartitions', () =>
      admin.fetchTopicMetadata({ topics: [configured] }),
    );
    await step('createTopicsDuplicate', () =>
      admin.createTopics({ topics: [{ topic: plain, numPartitions: 1, replicationFactor: 1 }] }),
    );
    await step('createTopicsInvalidName', () =>
      admin.createTopics({ topics: [{ topic: 'bad/name', numPartitions: 1, replicationFactor: 1 }] }),
    );
    await step('createTopicsInvalidConfig', () =>
      admin.createTopics({
        topics: [{
          topic: `${prefix}-badconfig`,
          numPartitions: 1,
          replicationFactor: 1,
          configEntries: [{ name: 'retention.ms', value: 'forever' }],
        }],
      }),
    );
    await step('deleteTopics', () => admin.deleteTopics({ topics: [configured, plain], timeout: 10000 }));
    await step('listTopicsAfterDelete', () => admin.listTopics());
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify({ steps }) + '\n');
}

main().catch((e) => {
  console.error('admin.js crashed:', e);
  process.exit(1);
});
