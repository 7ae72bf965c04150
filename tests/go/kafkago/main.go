// kafka-go (Debian's golang-github-segmentio-kafka-go-dev, 0.2.x) against a
// broker: small CLI driven by tests/integration/test_go_clients.py. Every
// mode prints one JSON line on stdout and exits non-zero on any error.
//
//	admin     BOOTSTRAP TOPIC PARTITIONS   Conn.CreateTopics TOPIC and TOPIC-tmp, list, Conn.DeleteTopics TOPIC-tmp
//	produce   BOOTSTRAP TOPIC COUNT        Writer (synchronous, RequiredAcks -1), keys k<i>, values v<i>
//	consume   BOOTSTRAP TOPIC COUNT GROUP  Reader with GroupID, FetchMessage + CommitMessages (synchronous)
//	list      BOOTSTRAP TOPIC...           partition counts of the named topics (Metadata v1)
//	delete    BOOTSTRAP TOPIC              Conn.DeleteTopics (DeleteTopics v1)
//
// kafka-go 0.2 hard-codes its request versions (no ApiVersions): CreateTopics
// v0, Produce v2, Fetch v2, all removed by Kafka 4.0 (KIP-896), so admin,
// produce and consume fail against Kafka 4 and against Sluice, which has the
// same minimum versions. The test marks those as expected failures.
//
// kafka-go 0.2 has no public OffsetFetch, so there is no "committed" mode:
// the test reads the group's offsets with confluent-kafka.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kafka-go: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func emit(v interface{}) {
	out, err := json.Marshal(v)
	check(err, "json")
	fmt.Println(string(out))
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	check(err, "number "+s)
	return n
}

// topics maps each named topic to its partition count, from a Metadata
// request. The names are needed: kafka-go 0.2's ReadPartitions() without
// topics sends Metadata v1 with an empty topic array, which means "no topics"
// from v1 on (all topics is a null array), so it lists nothing on Kafka too.
func topics(bootstrap string, names ...string) map[string]int {
	conn, err := kafka.Dial("tcp", bootstrap)
	check(err, "Dial")
	defer conn.Close()
	parts, err := conn.ReadPartitions(names...)
	check(err, "ReadPartitions")
	out := map[string]int{}
	for _, p := range parts {
		out[p.Topic]++
	}
	return out
}

func admin(bootstrap, topic string, partitions int) {
	conn, err := kafka.Dial("tcp", bootstrap)
	check(err, "Dial")
	defer conn.Close()
	tmp := topic + "-tmp"
	check(conn.CreateTopics(
		kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1},
		kafka.TopicConfig{Topic: tmp, NumPartitions: 1, ReplicationFactor: 1},
	), "CreateTopics")
	listed := topics(bootstrap, topic, tmp)
	check(conn.DeleteTopics(tmp), "DeleteTopics")
	var after map[string]int
	for i := 0; i < 50; i++ {
		after = topics(bootstrap, topic, tmp)
		if _, ok := after[tmp]; !ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, tmpListed := listed[tmp]
	_, tmpAfter := after[tmp]
	_, topicAfter := after[topic]
	emit(map[string]interface{}{
		"created":            topic,
		"partitions":         listed[topic],
		"listed":             listed[topic] > 0 && tmpListed,
		"tmp_after_delete":   tmpAfter,
		"topic_after_delete": topicAfter,
	})
}

type record struct {
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

func produce(bootstrap, topic string, count int) {
	w := kafka.NewWriter(kafka.WriterConfig{
		Brokers:      []string{bootstrap},
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: -1,
		BatchSize:    100,
		BatchTimeout: 10 * time.Millisecond,
		MaxAttempts:  5,
	})
	msgs := make([]kafka.Message, count)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A synchronous Writer returns once every message is acknowledged; it
	// reports neither partitions nor offsets (-1 below).
	check(w.WriteMessages(ctx, msgs...), "WriteMessages")
	check(w.Close(), "Writer Close")
	acks := make([]record, count)
	for i, m := range msgs {
		acks[i] = record{-1, -1, string(m.Key), string(m.Value)}
	}
	emit(acks)
}

func consume(bootstrap, topic string, count int, group string) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        []string{bootstrap},
		GroupID:        group,
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       1 << 20,
		MaxWait:        200 * time.Millisecond,
		CommitInterval: 0, // CommitMessages commits synchronously
		ErrorLogger:    nil,
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout())
	defer cancel()
	got := make([]record, 0, count)
	for len(got) < count {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			fail("FetchMessage after %d of %d records: %v", len(got), count, err)
		}
		got = append(got, record{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		check(r.CommitMessages(ctx, m), "CommitMessages")
	}
	check(r.Close(), "Reader Close")
	sort.SliceStable(got, func(i, j int) bool {
		if got[i].Partition != got[j].Partition {
			return got[i].Partition < got[j].Partition
		}
		return got[i].Offset < got[j].Offset
	})
	emit(got)
}

// timeout for consume: GO_CLIENT_TIMEOUT_S seconds, default 90.
func timeout() time.Duration {
	if s := os.Getenv("GO_CLIENT_TIMEOUT_S"); s != "" {
		return time.Duration(atoi(s)) * time.Second
	}
	return 90 * time.Second
}

func list(bootstrap string, names []string) {
	emit(topics(bootstrap, names...))
}

func deleteTopic(bootstrap, topic string) {
	conn, err := kafka.Dial("tcp", bootstrap)
	check(err, "Dial")
	defer conn.Close()
	check(conn.DeleteTopics(topic), "DeleteTopics")
	emit(map[string]string{"deleted": topic})
}

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 4 && args[0] == "admin":
		admin(args[1], args[2], atoi(args[3]))
	case len(args) == 4 && args[0] == "produce":
		produce(args[1], args[2], atoi(args[3]))
	case len(args) == 5 && args[0] == "consume":
		consume(args[1], args[2], atoi(args[3]), args[4])
	case len(args) >= 3 && args[0] == "list":
		list(args[1], args[2:])
	case len(args) == 3 && args[0] == "delete":
		deleteTopic(args[1], args[2])
	default:
		fail("usage: admin|produce|consume|list|delete ... (got %v)", args)
	}
}
