"""How independent training runs get trained: the shared job types (jobs.py), the local launcher
(local.py), the Ray launcher and its task (ray_launcher.py, ray_task.py), chosen by name
(registry.py)."""
