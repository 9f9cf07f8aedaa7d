#!/bin/sh
# The one-shot job of compose and Kubernetes: when the volumes hold no prepared dataset,
# simulates and prepares the embedded default one; when the model base path holds no
# version, trains a quick model on it and exports it as version 1 (as `evorec up` does on
# its first run). What is there already is left alone, so running it again is harmless.
set -eu
dataset="${EVOREC_DATASET:?EVOREC_DATASET must name the dataset folder}"
base="${EVOREC_SERVING__BASE_PATH:?EVOREC_SERVING__BASE_PATH must name the model base path}"
model="${EVOREC_SERVING__MODEL_NAME:-encoder}"
work="${TMPDIR:-/tmp}/evorec-prepare"

if [ -f "$dataset/manifest.json" ]; then
    echo "dataset present at $dataset"
else
    echo "no dataset at $dataset: simulating and preparing the default one"
    rm -rf "$work" "$dataset.partial"
    evorec data synth "$work/raw"
    evorec data prepare "$work/raw" --out "$dataset.partial" --topics 8
    # Renamed when complete, so that a job killed half-way leaves no dataset that looks whole.
    rm -rf "$dataset"
    mv "$dataset.partial" "$dataset"
    rm -rf "$work"
fi

if ls "$base/$model" 2>/dev/null | grep -qx '[0-9][0-9]*'; then
    echo "model present under $base/$model"
else
    echo "no model under $base/$model: training one"
    # evorec up's quick defaults; `evorec train` exports under a temporary name and renames.
    evorec train "$dataset" --epochs 30 --patience 5 --out "$base" --name "$model"
fi
