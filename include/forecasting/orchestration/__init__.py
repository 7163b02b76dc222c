"""Running the stages: the pipeline's stage functions, what a task does around them, the DAGs' defaults, run notes, the local run, the summary and the workers' warm-up."""
