#!/usr/bin/env bash
# The main job, embedded: build an index from the committed sample, answer filtered queries,
# and measure recall against exact ground truth. No cloud, no server.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLE=tests/data/glove-20k
INDEX=${INDEX:-target/demo-index}
cargo build --release -q --no-default-features -p squash-cli --bin squash
SQUASH=${CARGO_TARGET_DIR:-target}/release/squash

echo "== build: 20,000 GloVe vectors with attributes, 4 partitions"
"$SQUASH" build --vectors "$SAMPLE/base.fvecs" --attributes "$SAMPLE/base_attrs.csv" \
    --metric cosine --partitions 4 --out "$INDEX"

echo "== query: 5 nearest words to query 0 among words starting with 'q' or 'z'"
"$SQUASH" query --index "$INDEX" --vector-file "$SAMPLE/queries.fvecs" --row 0 --k 5 \
    --filter '{"initial_class": {"$in": ["q", "z"]}}'

echo "== query: 5 nearest among the 10,000 most frequent words of length 4..6"
"$SQUASH" query --index "$INDEX" --vector-file "$SAMPLE/queries.fvecs" --row 1 --k 5 \
    --filter '{"freq_rank": {"$lt": 10000}, "word_len": {"$gte": 4, "$lte": 6}}'

echo "== eval: recall@10 against exact ground truth, per workload"
"$SQUASH" eval --index "$INDEX" --workloads "$SAMPLE/workloads.json" --k 10
