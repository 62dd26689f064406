"""Rule class_images: see entmap.personalize.train.generate_class_images."""

from entmap.core.joblog import job_log
from entmap.personalize.train import generate_class_images

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    generate_class_images(
        base_model=sm.params.base_model,
        class_word=sm.params.class_word,
        count=sm.params.n_images,
        settings=sm.params.settings,
        out_dir=sm.output[0],
        device=sm.params.runtime["device"],
        dtype=sm.params.runtime["dtype"],
        threads=sm.params.runtime["threads"],
    )
