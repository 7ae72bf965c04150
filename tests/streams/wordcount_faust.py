"""WordCount (the Kafka Streams quick start) with faust-streaming.

Lines of text in, the running count of each word out (key: the word, value:
its count as JSON). One agent splits lines into words; the next one
repartitions them by word with `group_by` (a repartition topic) and counts
them in a Table, whose changelog topic holds the counts. The Table is kept
in memory, so every start restores it from the changelog.

Runs with .venv-faust's python (tests/run.sh makes it):
    wordcount_faust.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC APP_ID STATE_DIR
and stops cleanly on SIGTERM (faust commits its offsets then).
"""

import sys

import faust


def build(bootstrap, input_name, output_name, app_id, state_dir):
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=state_dir,
        topic_partitions=2,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        web_enabled=False,
    )
    lines = app.topic(input_name, key_serializer="raw", value_serializer="raw")
    words = app.topic(f"{app_id}-words", key_serializer="raw", value_serializer="raw", internal=True)
    counts_topic = app.topic(output_name, key_serializer="raw", value_serializer="json",
                             partitions=1, internal=True)
    counts = app.Table("word_counts", default=int)

    @app.agent(lines)
    async def split(stream):
        async for line in stream:
            for word in line.decode().split():
                await words.send(value=word.encode())

    @app.agent(words)
    async def count(stream):
        async for raw in stream.group_by(lambda raw: raw, name="word"):
            # A str key: the Table's changelog key is JSON (bytes keys are
            # written raw but read back as JSON, which fails on recovery).
            word = raw.decode()
            counts[word] += 1
            await counts_topic.send(key=word, value=counts[word])

    return app


if __name__ == "__main__":
    app = build(*sys.argv[1:6])
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
