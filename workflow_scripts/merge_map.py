"""Rule merge_map: see entmap.measure.map_cells.merge_map."""

import json

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id
from entmap.measure.map_cells import merge_map

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    with open(sm.input.noise_floor, encoding="utf-8") as handle:
        noise_floor = json.load(handle)
    merge_map(
        disruption_paths=list(sm.input.disruption),
        prompts=prompts_by_id(sm.input.suite, sm.params.prompt_ids),
        subjects=sm.params.subjects,
        models=sm.params.models,
        noise_floor=noise_floor,
        cells_path=sm.output.cells,
        e_sem_path=sm.output.e_sem,
        e_per_path=sm.output.e_per,
    )
