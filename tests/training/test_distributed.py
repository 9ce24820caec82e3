"""Two gloo processes on the CPU compute what one process computes."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gradw.training.distributed import GroupBatchNorm2d, convert_batchnorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, x: torch.Tensor, weight: torch.Tensor, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        bn = convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0]
        assert isinstance(bn, GroupBatchNorm2d)
        part = x.chunk(world)[rank].clone().requires_grad_(True)
        y = bn(part)
        (y * weight.chunk(world)[rank]).sum().backward()
        tensors = (y.detach(), part.grad, bn.weight.grad, bn.running_mean, bn.running_var)
        queue.put((rank, *(t.numpy().copy() for t in tensors)))
    finally:
        dist.destroy_process_group()


def test_group_batchnorm_matches_single_process_batchnorm():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6) * 2 + 1
    weight = torch.randn(4, 3, 5, 6)
    ref_bn = torch.nn.BatchNorm2d(3)
    xr = x.clone().requires_grad_(True)
    y_ref = ref_bn(xr)
    (y_ref * weight).sum().backward()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, x, weight, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=120) for _ in range(2)), key=lambda r: r[0])
    results = [(r[0], *(torch.from_numpy(a) for a in r[1:])) for r in results]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    y = torch.cat([r[1] for r in results])
    grad_x = torch.cat([r[2] for r in results])
    torch.testing.assert_close(y, y_ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_x, xr.grad, atol=1e-5, rtol=1e-5)
    # parameter gradients are per rank (DDP sums/averages them); their sum is the full gradient
    torch.testing.assert_close(results[0][3] + results[1][3], ref_bn.weight.grad, atol=1e-4, rtol=1e-4)
    for r in results:
        torch.testing.assert_close(r[4], ref_bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r[5], ref_bn.running_var, atol=1e-6, rtol=1e-5)


def test_single_process_group_batchnorm_is_batchnorm():
    torch.manual_seed(1)
    bn = torch.nn.BatchNorm2d(2)
    gbn = convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(2)))[0]
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(gbn(x), bn(x))
