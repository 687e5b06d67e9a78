"""Training of the two-view encoders: data, cached embedding, hard-negative batches, DDP,
the resumable stage runner, and the stages (cold start, AMM rounds, semi-supervised,
supervised). Heavy imports stay inside the submodules."""
