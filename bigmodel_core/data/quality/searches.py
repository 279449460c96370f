"""The two rules that search rather than look row by row: near-duplicate clusters over MinHash signatures, and
labels a cross-validated model contradicts. Each takes the Checker `c` after its scan (c.f: the per-row facts)."""

from __future__ import annotations

import numpy as np


def near_duplicates(c, candidates: np.ndarray) -> dict:
    """Clusters of near-identical texts among the candidate rows (see bigmodel_core.data.minhash): one
    signature per distinct text (its first candidate row), candidate pairs from shared LSH bands, kept
    when the estimated Jaccard similarity of the full signatures is >= min_jaccard; clusters are the
    connected components, named by their smallest group key. Per row: `cluster` (the row of the cluster's
    name, -1 for rows in no cluster: write() gives a member its cluster's group key), `copies`
    (members but the kept one: a fixed test row first, else the first), `stuck` (fixed train rows of a
    cluster holding a fixed test row), `to_test` (rows of such a cluster), and `reasons`."""
    from bigmodel_core.data import minhash

    rule = c.p.rules["near_duplicate"]
    key_id, f = c.key_id, c.f
    rows = np.nonzero(candidates)[0]
    _, first_at = np.unique(key_id[rows], return_index=True)
    firsts = np.sort(rows[first_at])  # one row per distinct text, in table order
    del _, first_at
    sig = f["sig"]

    def none_found() -> dict:
        no = np.zeros(c.n, dtype=bool)
        return {
            "cluster": np.full(c.n, -1, dtype=np.int64),
            "copies": no,
            "stuck": no,
            "to_test": no,
            "aside": np.empty(0, dtype=np.int64),
            "twin": np.empty(0, dtype=np.int64),
            "jaccard": np.empty(0, dtype=np.float32),
            "pairs": [],
            "pairs_found": 0,
            "clusters": 0,
        }

    if not len(firsts):
        return none_found()
    pairs = minhash.candidate_pairs(sig, c.bands, c.band_rows, subset=firsts)
    a, b = firsts[pairs[:, 0]], firsts[pairs[:, 1]]
    sims = minhash.similarity(sig, np.stack([a, b], axis=1))
    keep = sims >= rule.min_jaccard
    pairs, sims, a, b = pairs[keep], sims[keep], a[keep], b[keep]
    if not len(pairs):
        return none_found()
    comp = minhash.components(len(firsts), pairs)
    in_pair = np.zeros(len(firsts), dtype=bool)
    in_pair[np.unique(pairs)] = True
    # cluster name: the member with the smallest group key (keys sort as (hi, lo), as their hex does)
    member_firsts = firsts[in_pair]
    member_comp = comp[in_pair]
    order = np.lexsort((f["lo"][member_firsts], f["hi"][member_firsts], member_comp))
    sorted_comp = member_comp[order]
    leads = np.concatenate([[True], sorted_comp[1:] != sorted_comp[:-1]])
    leader_of_comp = np.full(int(comp.max()) + 1, -1, dtype=np.int64)
    leader_of_comp[sorted_comp[leads]] = member_firsts[order][leads]
    # per distinct text (key id): its cluster's leader row, and the first row holding it (whose signature
    # stands for the text); every candidate row whose text is in a pair joins that text's cluster
    n_keys = int(key_id.max()) + 1
    leader_of_key = np.full(n_keys, -1, dtype=np.int64)
    leader_of_key[key_id[member_firsts]] = leader_of_comp[member_comp]
    first_of_key = np.full(n_keys, -1, dtype=np.int64)
    first_of_key[key_id[member_firsts]] = member_firsts
    cluster = np.full(c.n, -1, dtype=np.int64)  # the leader row of the row's cluster
    cluster[rows] = leader_of_key[key_id[rows]]
    del leader_of_key
    members = cluster >= 0
    fixed = f["fixed"]
    is_test = members & (fixed == 2)
    test_clusters = np.unique(cluster[is_test])
    to_test = members & np.isin(cluster, test_clusters)
    stuck = to_test & ((fixed == 1) | (fixed == 3))  # fixed train or val rows cannot follow into test
    # keep one row per cluster: a fixed test row first, then the earliest
    m_rows = np.nonzero(members)[0]
    order = m_rows[np.lexsort((m_rows, ~is_test[m_rows], cluster[m_rows]))]
    first_in = np.concatenate([[True], cluster[order][1:] != cluster[order][:-1]])
    kept = order[first_in]  # in ascending order of their cluster's leader
    copies = members.copy()
    copies[kept] = False
    copies &= ~stuck
    aside = np.nonzero(copies | stuck)[0]
    twins = kept[np.searchsorted(cluster[kept], cluster[aside])]
    jac = (
        minhash.similarity(sig, np.stack([first_of_key[key_id[aside]], first_of_key[key_id[twins]]], axis=1))
        if len(aside)
        else np.empty(0)
    )
    top = np.argsort(-sims, kind="stable")[: max(c.p.examples, 10)]
    c.pair_rows = [(int(a[t]), int(b[t]), float(sims[t])) for t in top]
    # reasons are written out in write(), for the rows a batch quarantines: per row only its twin and Jaccard
    return {
        "cluster": cluster,
        "copies": copies,
        "stuck": stuck,
        "to_test": to_test,
        "aside": aside,
        "twin": twins,
        "jaccard": jac.astype(np.float32),
        "pairs": [],
        "pairs_found": len(pairs),
        "clusters": len(kept),
    }


def label_noise_pass(c, candidates: np.ndarray) -> np.ndarray:
    """Rows among the candidates (at most sample_rows of those collected in scan, the smallest group keys)
    whose label a cross-validated model contradicts (bigmodel_core.data.label_noise)."""
    from bigmodel_core.data import label_noise

    sample_rows, f = c.noise_sample_rows, c.f
    hits = np.zeros(c.n, dtype=bool)
    sel = np.nonzero(candidates[c.noise_rows])[0]
    if len(sel) > sample_rows:
        sel = np.sort(sel[np.argsort(f["hi"][c.noise_rows[sel]], kind="stable")[:sample_rows]])
    rows = c.noise_rows[sel]
    c.noise = {
        "rows": np.empty(0, dtype=np.int64),
        "checked": 0,
        "candidates": int(candidates.sum()),
        "kappa": None,
        "note": "off (sample_rows 0)" if not sample_rows else "",
    }
    if len(rows):
        found = label_noise.find([c.noise_texts[i] for i in sel], f["label"][rows], c.noise_folds)
        c.noise.update(
            rows=rows[found.flagged],
            given_p=found.given_p,
            predicted=found.predicted,
            predicted_p=found.predicted_p,
            checked=len(found.checked),
            note=found.note,
            kappa=None if found.kappa is None else round(found.kappa, 4),
        )
        hits[c.noise["rows"]] = True
    c.noise_texts = []
    return hits
