"""How a run's steps start: forked from a server that imported the definitions once, not spawned afresh.

The multiprocess executor's default, `spawn`, starts every step as a new interpreter that imports the
definitions again (2.5-3 s idle, 5-7 s on a busy machine) before a second of work. With `forkserver` the
run starts one server process that imports modelcrew_assets.definitions once; each step is a fork of it,
still a process of its own, so a step that crashes or leaks takes no other step with it.

Safe because importing the definitions opens no file or socket and starts no thread (resources connect
when a step uses them), and because no step holds a GPU itself: GPU stages start their work as a separate
process (the local executor) or on a pod, through Pipes, so no CUDA or torch state is ever forked.
"""

import dagster as dg

PRELOADED_MODULES = ["modelcrew_assets.definitions"]

forkserver_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}}},
    name="forkserver_multiprocess",
)
