"""What one train step needs: device mesh and sharding, optimisers, the train state, steps,
checkpoints."""
