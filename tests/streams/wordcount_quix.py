"""WordCount (the Kafka Streams quick start) with quixstreams.

Lines of text in, the running count of each word out (key: the word, value:
its count as JSON). The count is quixstreams State (RocksDB) with its
changelog topic; `group_by` repartitions the words by key through a
repartition topic first, so each word's count lives on one partition.

Runs with .venv-quix's python (tests/run.sh makes it):
    wordcount_quix.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC APP_ID STATE_DIR
and stops cleanly on SIGTERM (quixstreams commits its checkpoint then).
"""

import sys

from quixstreams import Application


def main(bootstrap, input_name, output_name, app_id, state_dir):
    app = Application(
        broker_address=bootstrap,
        consumer_group=app_id,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        commit_interval=1.0,
        loglevel="INFO",
    )
    lines = app.topic(input_name, key_deserializer="str", value_deserializer="str")
    counts = app.topic(output_name, key_serializer="str", value_serializer="json")

    def count(word, state):
        total = state.get("count", 0) + 1
        state.set("count", total)
        return total

    words = app.dataframe(lines).apply(lambda line: line.split(), expand=True)
    words = words.group_by(lambda word: word, name="word")
    words.apply(count, stateful=True).to_topic(counts)
    app.run()


if __name__ == "__main__":
    main(*sys.argv[1:6])
