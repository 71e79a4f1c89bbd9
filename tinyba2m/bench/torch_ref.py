"""The same ResNet-20 training step and conv shapes in PyTorch eager mode, for ``--vs-torch``.

PyTorch is never a dependency of tinyba2m: this module imports it only when called
(``pip install -e ".[bench]"`` or any ``torch`` build). The models mirror ``tinyba2m.models``
layer for layer, with the same parameter counts (a test checks it): CIFAR ResNet-20 with the
option-A (zero-padded) shortcut and attention where the placement puts it; SE with hidden width ``max(C // 16, 4)``; BA²M as in
docs/BA2M.md — channel branch GAP -> FC -> ReLU -> FC -> BN1d, local branch 1x1 -> BN -> ReLU
-> dilated 3x3 (d = 4) -> BN -> ReLU -> 1x1 -> BN, global branch with the stacked theta/phi/g
1x1 convs, 2x2 max-pooled keys and values, values projected to one channel by W_z before the
attention product, BN; SAR ``a = mean sigmoid(max(A_C, A_LS, A_GS))`` over the broadcast
(N, C, H, W) maps; ``w = N softmax(a)``; ``Y = w X``. Everything is plain eager PyTorch, as one
would write it (autograd, no fused custom kernels), float32, on the CPU or a CUDA GPU.
"""
from __future__ import annotations

from .. import backend
from ..attention import BA2MOptions
from ..attention.branches import hidden_width
from .step import row_model

D = BA2MOptions()  # the widths, dilation and subsampling tinyba2m's SE and BA²M are built with


def torch_available() -> tuple[bool, str]:
    """(True, version) if PyTorch imports here and can use the device of the active backend
    (a CUDA build for CuPy), else (False, the reason)."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising at import
        return False, f"PyTorch cannot be imported ({type(exc).__name__}: {exc})"
    if torch_device() == "cuda" and not torch.cuda.is_available():
        return False, f"PyTorch {torch.__version__} is installed but cannot use CUDA (a CPU-only build?)"
    return True, torch.__version__


def _modules():
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            h = hidden_width(c, D.reduction)
            self.fc1, self.fc2 = nn.Linear(c, h), nn.Linear(h, c)

        def forward(self, x):
            g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
            return x * g[:, :, None, None]

    class GlobalBranch(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.k = k = hidden_width(c, D.nonlocal_reduction)
            self.theta, self.phi, self.g = nn.Conv2d(c, k, 1), nn.Conv2d(c, k, 1), nn.Conv2d(c, k, 1)
            self.w_z, self.bn = nn.Conv2d(k, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x):
            n, _, h, w = x.shape
            k = self.k
            emb = F.conv2d(x, torch.cat([self.theta.weight, self.phi.weight, self.g.weight]),
                           torch.cat([self.theta.bias, self.phi.bias, self.g.bias]))
            kv = F.max_pool2d(emb[:, k:], D.subsample) if min(h, w) >= D.subsample else emb[:, k:]
            theta = emb[:, :k].reshape(n, k, h * w)
            phi = kv[:, :k].reshape(n, k, -1)
            v = self.w_z(kv[:, k:]).reshape(n, 1, -1)                           # (N, 1, M)
            p = torch.softmax(theta.transpose(1, 2) @ phi, dim=2)               # (N, HW, M)
            return self.bn((p @ v.transpose(1, 2)).reshape(n, 1, h, w))

    class BA2M(nn.Module):
        def __init__(self, c):
            super().__init__()
            h = hidden_width(c, D.reduction)
            self.channel = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, h), nn.ReLU(),
                                         nn.Linear(h, c), nn.BatchNorm1d(c))
            self.local = nn.Sequential(nn.Conv2d(c, h, 1), nn.BatchNorm2d(h), nn.ReLU(),
                                       nn.Conv2d(h, h, 3, padding=D.dilation, dilation=D.dilation),
                                       nn.BatchNorm2d(h), nn.ReLU(), nn.Conv2d(h, 1, 1), nn.BatchNorm2d(1))
            self.glob = GlobalBranch(c)

        def forward(self, x):
            a_c = self.channel(x)[:, :, None, None]                             # (N, C, 1, 1)
            s = torch.maximum(self.local(x), self.glob(x))                      # (N, 1, H, W)
            a = torch.sigmoid(torch.maximum(a_c, s)).mean(dim=(1, 2, 3))        # (N,)
            w = x.shape[0] * torch.softmax(a, dim=0)
            return x * w[:, None, None, None]

    class Shortcut(nn.Module):
        """Option A: subsample and zero-pad the new channels (no parameters)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.pad, self.stride = (cout - cin) // 2, stride
            self.extra = cout - cin - self.pad

        def forward(self, x):
            return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.extra))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, attention):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.att = nn.Identity() if attention == "none" else {"se": SE, "ba2m": BA2M}[attention](cout)
            self.shortcut = Shortcut(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

        def forward(self, x):
            r = self.att(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
            return F.relu(r + self.shortcut(x))

    class ResNet20(nn.Module):
        def __init__(self, attention, num_classes, placement):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for i in range(3):
                    att = attention if (placement == "every" or i == 2) else "none"
                    blocks.append(Block(cin, cout, 2 if (stage > 0 and i == 0) else 1, att))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    return ResNet20


def torch_resnet20(attention: str = "none", num_classes: int = 100, placement: str = D.placement):
    """The PyTorch twin of ``build_model("resnet20", attention, placement=placement)`` (attention
    none / se / ba2m, in the last block of each stage or in every block)."""
    if attention not in ("none", "se", "ba2m"):
        raise ValueError(f"torch_resnet20: attention must be none, se or ba2m, got {attention!r}")
    return _modules()(attention, num_classes, placement)


def torch_device():
    """"cuda" when the tinyba2m backend is CuPy (the comparison runs on the same GPU), else "cpu"."""
    return "cuda" if backend.name == "cupy" else "cpu"


def _torch(threads: int, seed: int):
    """(torch, device), with ``threads`` intra-op threads and the random seed ``seed`` set."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch, torch_device()


def _synced(fn, torch, device):
    """``fn`` followed by a wait for queued GPU work (a timer read after it sees the work done)."""
    if device != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize()
    return run


def torch_training_step(row: str, batch_size: int, threads: int, num_classes: int = 100, seed: int = 0):
    """A callable running one PyTorch ResNet-20 SGD step of a step-table row (forward, cross-entropy, backward,
    update; momentum 0.9, weight decay 5e-4, as ``bench.step``) on a fixed random float32 batch,
    with ``threads`` intra-op threads, and waiting for the GPU."""
    torch, device = _torch(threads, seed)
    attention, options = row_model(row)
    model = torch_resnet20(attention, num_classes, **options).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return _synced(step, torch, device)


def torch_conv(shape, threads: int):
    """A callable running one conv shape (a ``bench.kernels.ConvShape``) in PyTorch, float32:
    the convolution with its dx and dw, waiting for the GPU."""
    torch, device = _torch(threads, 1)
    x = torch.randn(*shape.x_shape, device=device, requires_grad=True)
    w = (0.1 * torch.randn(*shape.w_shape, device=device)).requires_grad_()
    kw = dict(stride=shape.stride, padding=shape.padding, dilation=shape.dilation)
    dout = torch.randn_like(torch.nn.functional.conv2d(x, w, **kw))

    def forward_backward():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, **kw).backward(dout)

    return _synced(forward_backward, torch, device)


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
