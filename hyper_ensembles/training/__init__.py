"""What training needs: device mesh and sharding, optimisers, the train state, the train and tune
steps, checkpoints, and the factory that builds a run's parts from its config (setup.py)."""
