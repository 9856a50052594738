"""The peer encoder for `shopgraph bench search`: sentence-transformers on PyTorch
(CPU), encoding the same texts as shopgraph, at the same batch sizes.

    python peer_encoder.py MODEL_DIR TEXTS_FILE OUT_JSON [BATCH ...]

TEXTS_FILE holds one text a line. OUT_JSON receives, per batch size, the texts per
second, and the vectors of the first 16 texts (to check that both encode alike).
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    model_dir, texts_file, out_file = sys.argv[1:4]
    batches = [int(b) for b in sys.argv[4:]] or [1, 32]
    with open(texts_file, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:64], batch_size=32)  # warm-up, as shopgraph's run is warm too
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "throughput": {}}
    for batch in batches:
        # Batch 1 is slow: time a slice of the texts, as the Rust side does.
        sample = texts if batch > 1 else texts[: max(1, len(texts) // 4)]
        start = time.perf_counter()
        vectors = model.encode(sample, batch_size=batch, normalize_embeddings=True)
        elapsed = time.perf_counter() - start
        result["throughput"][str(batch)] = {"texts": len(sample), "seconds": elapsed}
    result["first"] = [v.tolist() for v in model.encode(texts[:16], normalize_embeddings=True)]
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
