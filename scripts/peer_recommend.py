"""The peer recommenders for `shopgraph eval`: implicit (ALS, BPR, item-kNN) and
cornac's EASE, trained on the very split files shopgraph wrote, tuned the same way
(a small grid on fit.tsv, scored on valid.tsv by NDCG@10, then refitted on train.tsv).

    python peer_recommend.py SPLIT_DIR [SPLIT_DIR ...]

Writes, per split and per model, SPLIT_DIR/peers/<name>.tsv (`user<TAB>item<TAB>item ...`,
the 20 best items not in training for each test user, best first) and
SPLIT_DIR/peers/<name>.fit (seconds of the final fit). shopgraph scores the rankings
with its own metric code, so both sides are measured alike.

For rating prediction, cornac's biased MF (SGD, as ours) is tuned by RMSE on valid.tsv
and writes SPLIT_DIR/peers/cornac-MF.ratings (`user<TAB>item<TAB>predicted rating`
for every test row), which shopgraph scores for MSE/RMSE.
"""
import csv
import os
import sys
import time

import warnings

import numpy as np
import scipy.sparse as sp

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice; it runs its own threads

K = 20
warnings.filterwarnings("ignore", message="Method expects CSR input")


def read(path):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [(u, i, float(r)) for u, i, r, _ in rows[1:]]


class Index:
    def __init__(self, *parts):
        self.users, self.items = {}, {}
        for part in parts:
            for u, i, _ in part:
                self.users.setdefault(u, len(self.users))
                self.items.setdefault(i, len(self.items))
        self.item_names = [None] * len(self.items)
        for name, n in self.items.items():
            self.item_names[n] = name

    def matrix(self, part):
        rows = [self.users[u] for u, _, _ in part]
        cols = [self.items[i] for _, i, _ in part]
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                          shape=(len(self.users), len(self.items)))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def ndcg_at_10(ranked, relevant):
    dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(ranked[:10]) if i in relevant)
    ideal = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), 10)))
    return dcg / ideal if ideal else 0.0


def rank(scores_fn, train, users):
    """Top K items per user (indices), training items removed."""
    out = {}
    for u in users:
        s = np.asarray(scores_fn(u), dtype=np.float64).copy()
        s[train.indices[train.indptr[u]:train.indptr[u + 1]]] = -np.inf
        top = np.argpartition(-s, K)[:K] if len(s) > K else np.arange(len(s))
        top = top[np.argsort(-s[top], kind="stable")]
        out[u] = [int(i) for i in top if np.isfinite(s[i])]
    return out


def held_out(index, part):
    relevant = {}
    for u, i, _ in part:
        relevant.setdefault(index.users[u], set()).add(index.items[i])
    return relevant


# --- the peers: each is (name, grid, fit(train_matrix, params) -> scores_fn) ---------

def implicit_factors(model):
    def fit(train, params):
        m = model(**params)
        m.fit(train, show_progress=False)
        uf = np.asarray(m.user_factors)
        itf = np.asarray(m.item_factors)
        return lambda u: itf @ uf[u]
    return fit


def implicit_knn(train, params):
    from implicit.nearest_neighbours import CosineRecommender
    m = CosineRecommender(**params)
    m.fit(train, show_progress=False)
    sim = m.similarity.tocsr()
    return lambda u: np.asarray((train[u] @ sim).todense()).ravel()


def cornac_ease(train, params):
    from cornac.data import Dataset
    from cornac.models import EASE
    coo = train.tocoo()
    triples = [(str(u), str(i), 1.0) for u, i in zip(coo.row, coo.col)]
    data = Dataset.from_uir(triples, seed=42)
    m = EASE(lamb=params["lamb"], posB=True, verbose=False)
    m.fit(data)
    n_items = train.shape[1]
    # cornac renumbers; map its item order back to ours.
    inv_items = {v: int(k) for k, v in data.iid_map.items()}
    order = np.array([inv_items[j] for j in range(data.num_items)])
    def scores(u):
        out = np.full(n_items, -np.inf)
        key = str(u)
        if key in data.uid_map:
            out[order] = m.score(data.uid_map[key])
        return out
    return scores


def peers():
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    return [
        ("implicit-ALS", [dict(factors=f, regularization=r, alpha=a, iterations=15, random_state=42)
                          for f in (64, 128) for r in (0.01, 1.0) for a in (1.0, 10.0)],
         implicit_factors(AlternatingLeastSquares)),
        ("implicit-BPR", [dict(factors=f, learning_rate=0.01, regularization=0.01, iterations=it, random_state=42)
                          for f in (64, 128) for it in (100, 300)],
         implicit_factors(BayesianPersonalizedRanking)),
        ("implicit-itemKNN", [dict(K=k) for k in (50, 100, 200, 400)], implicit_knn),
        ("cornac-EASE", [dict(lamb=l) for l in (50.0, 200.0, 500.0, 2000.0)], cornac_ease),
    ]


def cornac_mf(fit_rows, valid_rows, train_rows, test_rows):
    """Biased MF tuned by RMSE on validation; predictions for the test rows, and the fit
    seconds of the final fit."""
    from cornac.data import Dataset
    from cornac.models import MF

    def fit(rows, params):
        data = Dataset.from_uir([(u, i, r) for u, i, r in rows], seed=42)
        m = MF(k=params["k"], max_iter=25, learning_rate=0.01, lambda_reg=params["reg"],
               use_bias=True, early_stop=False, seed=42, verbose=False)
        m.fit(data)
        mean = float(np.mean([r for _, _, r in rows]))
        lo, hi = min(r for _, _, r in rows), max(r for _, _, r in rows)

        def predict(u, i):
            if u in data.uid_map and i in data.iid_map:
                return float(np.clip(m.score(data.uid_map[u], data.iid_map[i]), lo, hi))
            return mean
        return predict

    def rmse(predict, rows):
        return float(np.sqrt(np.mean([(predict(u, i) - r) ** 2 for u, i, r in rows])))

    grid = [dict(k=k, reg=reg) for k in (50, 100) for reg in (0.02, 0.05)]
    best = min(grid, key=lambda p: rmse(fit(fit_rows, p), valid_rows))
    start = time.perf_counter()
    predict = fit(train_rows, best)
    seconds = time.perf_counter() - start
    return best, [(u, i, predict(u, i)) for u, i, _ in test_rows], seconds


def main():
    for split in sys.argv[1:]:
        fit_part, valid, train, test = (read(os.path.join(split, f"{n}.tsv"))
                                        for n in ("fit", "valid", "train", "test"))
        index = Index(train, test)
        fit_m, train_m = index.matrix(fit_part), index.matrix(train)
        valid_rel, test_rel = held_out(index, valid), held_out(index, test)
        os.makedirs(os.path.join(split, "peers"), exist_ok=True)
        for name, grid, fit in peers():
            best, best_ndcg = grid[0], -1.0
            if len(grid) > 1:
                for params in grid:
                    ranked = rank(fit(fit_m, params), fit_m, list(valid_rel))
                    ndcg = np.mean([ndcg_at_10(ranked[u], valid_rel[u]) for u in valid_rel])
                    print(f"{split} {name} {params}: validation NDCG@10 {ndcg:.4f}", file=sys.stderr)
                    if ndcg > best_ndcg:
                        best, best_ndcg = params, ndcg
            start = time.perf_counter()
            scores = fit(train_m, best)
            seconds = time.perf_counter() - start
            ranked = rank(scores, train_m, list(test_rel))
            users = {n: u for u, n in index.users.items()}
            with open(os.path.join(split, "peers", f"{name}.tsv"), "w", encoding="utf-8") as f:
                for u, items in ranked.items():
                    f.write("\t".join([users[u]] + [index.item_names[i] for i in items]) + "\n")
            with open(os.path.join(split, "peers", f"{name}.fit"), "w", encoding="utf-8") as f:
                f.write(f"{seconds:.3f}\n")
            print(f"{split} {name}: chose {best}, fit {seconds:.2f} s", file=sys.stderr)
        if len({r for _, _, r in train}) > 1:  # explicit ratings
            best, predictions, seconds = cornac_mf(fit_part, valid, train, test)
            with open(os.path.join(split, "peers", "cornac-MF.ratings"), "w", encoding="utf-8") as f:
                for u, i, p in predictions:
                    f.write(f"{u}\t{i}\t{p:.6f}\n")
            with open(os.path.join(split, "peers", "cornac-MF.fit"), "w", encoding="utf-8") as f:
                f.write(f"{seconds:.3f}\n")
            print(f"{split} cornac-MF: chose {best}, fit {seconds:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
