"""What users watch: a job's events over SSE, from its start or from a resume cursor."""
