"""One process of the multi-process sampling checks of `tests/test_multihost.py`.

``python multihost_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_DIR [--fail-at-end]``: joins a
``jax.distributed`` run on 127.0.0.1:PORT, samples the global batch of `CASES` sharded over
the devices of every process (each process passes and gets back its own rows), and writes its
rows of every result to ``OUT_DIR/process-<id>.npz``. With ``--fail-at-end``, process 1 then
raises while the others wait in a collective: every process must exit at once (the test
checks how). The test imports `problem` and `CASES` for its single-process reference.
"""

import sys

import jax
import jax.random as jr
import numpy as np

import jaxdiff as jd

#: the global batch, and the samples and chunk of the chunked cases (a padded last chunk)
NUM, NUM_CHUNKED, CHUNK = 16, 14, 8

#: name -> (sampler, key): None, "one" (`jr.key(1)` for the batch) or "per_sample"
#: (`per_sample_keys(jr.key(2), NUM)`)
CASES = {
    "heun": (jd.samplers.Heun(), None),
    "euler_ancestral": (jd.samplers.EulerAncestral(), "one"),
    "per_sample": (jd.samplers.EulerAncestral(), "per_sample"),
}
#: name -> (sampler, key) of `sample_chunked` on the first NUM_CHUNKED samples
CHUNKED = {
    "chunked_heun": (jd.samplers.Heun(), None),
    "chunked_ancestral": (jd.samplers.EulerAncestral(), 3),
}


def problem():
    """The mixture, grid and global batch that the processes and the reference share."""
    gm = jd.analytic.ring()
    sigmas = jd.schedules.karras(6, 0.002, 80.0)
    x = np.asarray(80.0 * jr.normal(jr.key(0), (NUM, 2)))
    return gm, sigmas, x


def run(out_dir: str, fail_at_end: bool) -> None:
    from jax.experimental import multihost_utils

    from jaxdiff._parallel import (
        local_rows,
        per_sample_keys,
        process_slice,
        replicate,
        sample_chunked,
        shard_batch,
    )
    from jaxdiff.train import data_mesh

    me, count = jax.process_index(), jax.process_count()
    mesh = data_mesh()  # every device of every process
    gm, sigmas, x = problem()
    local = NUM // count
    rows = process_slice(local, mesh)
    den = replicate(gm, mesh).denoiser
    xs = shard_batch(x[rows], mesh)  # this process's rows only
    out = {"rows": np.array([rows.start, rows.stop])}
    for name, (solver, kind) in CASES.items():
        key = None
        if kind == "one":
            key = jr.key(1)
        elif kind == "per_sample":
            key = shard_batch(per_sample_keys(jr.key(2), local, offset=rows.start), mesh)
        result = jd.sample(den, xs, sigmas, solver=solver, key=key)
        out[name] = local_rows(result)
        out[name + "_devices"] = np.array(len(result.sharding.device_set))
        out[name + "_shard_rows"] = np.array([s.data.shape[0] for s in result.addressable_shards])
    chunk_local = NUM_CHUNKED // count
    mine = x[me * chunk_local : (me + 1) * chunk_local]  # the processes' blocks, in order
    for name, (solver, seed) in CHUNKED.items():
        key = None if seed is None else jr.key(seed)
        out[name] = sample_chunked(
            gm.denoiser, mine, sigmas, solver=solver, key=key, chunk_size=CHUNK, mesh=mesh
        )
    np.savez(f"{out_dir}/process-{me}.npz", **out)
    if fail_at_end:
        multihost_utils.sync_global_devices("results written")
        if me == 1:
            raise RuntimeError("injected failure in process 1")
        multihost_utils.sync_global_devices("never reached by process 1")


if __name__ == "__main__":
    port, process_id, num_processes, out_dir = sys.argv[1:5]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=int(num_processes),
        process_id=int(process_id),
        initialization_timeout=60,
    )
    from jaxdiff.cli._distributed import together

    with together("worker"):
        run(out_dir, "--fail-at-end" in sys.argv[5:])
    print(f"process {jax.process_index()} done", flush=True)
