"""The DeepSpeed toolkit every workload package uses (ZeRO-Inference, ZeRO-Infinity, and the next ones).

Workload packages (measure/zero_inference/, measure/zero_infinity/, ...) import from here and never
from each other (tests/test_import_layout.py). Each module runs in one kind of process, and its name
or docstring says which:

any process (plain data, no torch at import)
    models.py        shipped OPT configs (configs/*.json), local checkpoints, dummy weights (`build_model`
                     imports torch when called, in the child)
    config_blocks.py ZeRO-3 bucket sizes, swap buffer sizes, the aio block and --nvme-ai-aio parsing
    version.py       what the installed DeepSpeed parses (the aio thread key)
    errors.py        SpecError, SpecNotApplicable
    spec_base.py     a spec's JSON form and field checks
    job.py           the job a child runs: `write_job` / `read_job`, the one pair of functions
    record.py        the child's report (`ChildRecord`), one typed record on both sides of the pipe
    outcome.py       outcomes, exit codes, `is_oom`, `ChildExit`
    ops.py           DeepSpeed's JIT-built ops: built in a child for pytest, loaded in place in a child
pytest side (the parent)
    launch.py        one-shot child: job file, run under a timeout, record read back, outcome classified
                     (`classify`, `finish_run`), swap folder removed, artifacts kept
    worker_handle.py a persistent worker child (exec'd or forked): JSON-lines requests, WorkerGone
    forkserver.py    the session's fork server handle (start, fork, stop through the ChildRegistry)
    options.py       RunnerOptions, passed explicitly to a runner
    recording.py     recording a run into its test (params, extras, metrics, the not-applicable skip)
fork server
    forkserver_preload.py  what the server imports once (torch, DeepSpeed, transformers)
child side
    remote.py        around a child's run: environment, test hooks, /proc/self/io, versions, swap files,
                     `write_result`, `one_shot_main`
"""
