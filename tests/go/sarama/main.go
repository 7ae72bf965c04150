// Sarama (Debian's golang-github-shopify-sarama-dev) against a broker: small
// CLI driven by tests/integration/test_go_clients.py. Every mode prints one
// JSON line on stdout and exits non-zero on any error.
//
//	admin     BOOTSTRAP TOPIC PARTITIONS   create TOPIC, create+delete TOPIC-tmp, list topics
//	produce   BOOTSTRAP TOPIC COUNT        sync producer, acks all, keys k<i>, values v<i>
//	consume   BOOTSTRAP TOPIC COUNT GROUP  consumer group from the oldest offset, commits
//	committed BOOTSTRAP TOPIC GROUP        the group's committed offsets per partition
//	list-admin BOOTSTRAP                   topics through ClusterAdmin.ListTopics
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sarama: "+format+"\n", args...)
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

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "sluice-sarama-test"
	c.Version = sarama.V2_0_0_0
	c.Net.DialTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	check(err, "number "+s)
	return n
}

// topicNames lists the topics from a fresh Metadata request. Sarama 1.22's
// ClusterAdmin.ListTopics also sends DescribeConfigs v0, a version Kafka 4.0
// removed (KIP-896) and Sluice does not serve; mode list-admin exercises it.
func topicNames(bootstrap string) []string {
	client, err := sarama.NewClient([]string{bootstrap}, config())
	check(err, "NewClient")
	defer client.Close()
	check(client.RefreshMetadata(), "RefreshMetadata")
	names, err := client.Topics()
	check(err, "Topics")
	sort.Strings(names)
	return names
}

func listAdmin(bootstrap string) {
	a, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	check(err, "NewClusterAdmin")
	defer a.Close()
	topics, err := a.ListTopics()
	check(err, "ClusterAdmin.ListTopics")
	names := make([]string, 0, len(topics))
	for name := range topics {
		names = append(names, name)
	}
	sort.Strings(names)
	emit(names)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func admin(bootstrap, topic string, partitions int) {
	a, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	check(err, "NewClusterAdmin")
	defer a.Close()
	tmp := topic + "-tmp"
	detail := &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}
	check(a.CreateTopic(topic, detail, false), "CreateTopic "+topic)
	check(a.CreateTopic(tmp, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false), "CreateTopic "+tmp)
	listed := topicNames(bootstrap)
	md, err := a.DescribeTopics([]string{topic})
	check(err, "DescribeTopics")
	if len(md) != 1 || md[0].Err != sarama.ErrNoError {
		fail("DescribeTopics %s: %+v", topic, md)
	}
	check(a.DeleteTopic(tmp), "DeleteTopic "+tmp)
	// Deletion is asynchronous in Kafka: poll the listing for a while.
	var after []string
	for i := 0; i < 50; i++ {
		after = topicNames(bootstrap)
		if !contains(after, tmp) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	emit(map[string]interface{}{
		"created":            topic,
		"partitions":         len(md[0].Partitions),
		"listed":             contains(listed, topic) && contains(listed, tmp),
		"tmp_after_delete":   contains(after, tmp),
		"topic_after_delete": contains(after, topic),
	})
}

type ack struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

func produce(bootstrap, topic string, count int) {
	c := config()
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 5
	p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
	check(err, "NewSyncProducer")
	acks := make([]ack, 0, count)
	for i := 0; i < count; i++ {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		part, off, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)})
		check(err, "SendMessage "+k)
		acks = append(acks, ack{part, off, k, v})
	}
	check(p.Close(), "producer Close")
	emit(acks)
}

type handler struct {
	mu   sync.Mutex
	want int
	got  []ack
	done chan struct{}
	once sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		if len(h.got) < h.want {
			h.got = append(h.got, ack{m.Partition, m.Offset, string(m.Key), string(m.Value)})
			s.MarkMessage(m, "")
		}
		full := len(h.got) >= h.want
		h.mu.Unlock()
		if full {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func consume(bootstrap, topic string, count int, group string) {
	c := config()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	// With Retention 0 sarama 1.22 commits with OffsetCommit v1, which Kafka
	// 4.0 removed (KIP-896) and Sluice does not serve; a retention selects v2.
	c.Consumer.Offsets.Retention = 24 * time.Hour
	c.Consumer.Return.Errors = true
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, c)
	check(err, "NewConsumerGroup")
	go func() {
		for err := range g.Errors() {
			fail("consumer group error: %v", err)
		}
	}()
	h := &handler{want: count, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				finished <- err
				return
			}
		}
		finished <- nil
	}()
	select {
	case <-h.done:
	case err := <-finished:
		fail("Consume: %v", err)
	case <-time.After(90 * time.Second):
		h.mu.Lock()
		n := len(h.got)
		h.mu.Unlock()
		fail("timed out with %d of %d records", n, count)
	}
	cancel()
	check(<-finished, "Consume")
	// Close commits the marked offsets (the offset manager flushes on close).
	check(g.Close(), "consumer group Close")
	emit(h.got)
}

func committed(bootstrap, topic, group string) {
	client, err := sarama.NewClient([]string{bootstrap}, config())
	check(err, "NewClient")
	defer client.Close()
	parts, err := client.Partitions(topic)
	check(err, "Partitions")
	a, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	check(err, "NewClusterAdmin")
	defer a.Close()
	resp, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	check(err, "ListConsumerGroupOffsets")
	if resp.Err != sarama.ErrNoError {
		fail("OffsetFetch: %v", resp.Err)
	}
	out := map[string]int64{}
	for _, p := range parts {
		b := resp.GetBlock(topic, p)
		if b == nil {
			fail("no block for partition %d", p)
		}
		if b.Err != sarama.ErrNoError {
			fail("partition %d: %v", p, b.Err)
		}
		out[strconv.Itoa(int(p))] = b.Offset
	}
	emit(out)
}

func main() {
	args := os.Args[1:]
	if len(args) < 1 {
		fail("usage: admin|produce|consume|committed ...")
	}
	switch {
	case args[0] == "admin" && len(args) == 4:
		admin(args[1], args[2], atoi(args[3]))
	case args[0] == "produce" && len(args) == 4:
		produce(args[1], args[2], atoi(args[3]))
	case args[0] == "consume" && len(args) == 5:
		consume(args[1], args[2], atoi(args[3]), args[4])
	case args[0] == "list-admin" && len(args) == 2:
		listAdmin(args[1])
	case args[0] == "committed" && len(args) == 4:
		committed(args[1], args[2], args[3])
	default:
		fail("bad arguments: %v", args)
	}
}
