"""The batch finds the cell-type column like the CLI does and takes roles from its config."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_batch_with_an_inform_vocabulary(tmp_path):
    from napari_carspatial.cohort.batch import run_batch
    from napari_carspatial.datasets import demo_sample
    from napari_carspatial.io import write_table

    names = {"Tumor": "Tumour", "Tumor (antigen-neg)": "MSLN- tumour", "CAR T": "CAR+", "Macrophage": "Mac",
             "CD8 T": "Cytotoxic T", "CD4 T": "Helper T", "B cell": "B", "Stroma": "Stroma",
             "Endothelial": "Endothelial", "Other": "Other"}
    rows = []
    for tp in ("pre", "post"):
        s = demo_sample(size=500, timepoint=tp, seed=0, image=False)
        t = s.table.copy()
        t.obs["Phenotype"] = t.obs.pop("cell_type").cat.rename_categories(names)
        write_table(t, tmp_path / f"{tp}.h5ad")
        rows.append({"sample": f"P1-{tp}", "patient": "P1", "timepoint": tp, "table": f"{tp}.h5ad"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    # no cell_type_key: found by name; the one unusual name is given as a role
    cfg = {"regions": {"mode": "whole"}, "metric_options": {"roles": {"myeloid": ["Mac"]}}}
    res = run_batch(tmp_path / "manifest.csv", cfg, tmp_path / "results", scheduler="sequential", progress=False)
    assert not len(res.failed), res.failed
    m = res.metrics.set_index(["sample", "metric"])["value"]
    post = m.loc["P1-post"]
    assert post["n_car_t"] > 0 and np.isfinite(post["frac_car_t_contact_tumor"]) and post["n_myeloid"] > 0
    assert post["antigen_neg_fraction"] > 0  # "MSLN- tumour" is the antigen-negative tumour
    assert m.loc["P1-pre"]["n_car_t"] == 0  # CAR+ declared, none before infusion: a true 0
