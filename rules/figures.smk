# Figures of the map (PNG for screens, PDF for print).


rule figure_map:
    input:
        cells="results/maps/cells.parquet",
        noise_floor="results/noise_floor.json",
    output:
        png="results/figures/entanglement_map.png",
        pdf="results/figures/entanglement_map.pdf",
    log:
        "results/logs/figures/entanglement_map.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/figure_map.py"
