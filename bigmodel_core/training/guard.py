"""Stop at a non-finite loss or gradient norm, without making the GPU wait for the host every step.

Reading a CUDA scalar on the host (`bool(torch.isfinite(loss))`) blocks until the GPU has finished
everything queued so far, so a per-step check empties the launch queue once per step. On CUDA with a
single fused AdamW the guard keeps the verdict on the device instead:

* the "bad step" flag is handed to the fused kernel as `found_inf` (the attribute GradScaler uses), so
  the kernel itself skips the update of a bad step and undoes its step count: the weights never see it;
* the flag is copied to pinned host memory behind a CUDA event and read just before the *next*
  optimizer step (by then the GPU has long passed it) and at every checkpoint, log point and epoch end.

Elsewhere (unfused AdamW on CPU, the sparse optimizer of the bag model) the check is made before the
step, at once.
Either way a bad step leaves the weights and the last checkpoint as they were, and the error names it.
"""

from __future__ import annotations

import torch

LOSS, GRAD = 1, 2  # bits of the flag: which of the two was non-finite


class NonFiniteGuard:
    def __init__(self, optimizers: list[torch.optim.Optimizer], device: torch.device, hint: str) -> None:
        # Deferred wherever the kernel can skip a step itself: one fused AdamW (the loop fuses it on CUDA).
        self.deferred = len(optimizers) == 1 and bool(optimizers[0].defaults.get("fused"))
        self.optimizer = optimizers[0]
        self.device = device
        self.hint = hint
        self._host = torch.zeros((), dtype=torch.int32, pin_memory=device.type == "cuda")
        self._pending: tuple[int, int, torch.cuda.Event | None] | None = None  # (step, epoch, event)

    def before_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int, epoch: int) -> None:
        """Call between the backward pass and optimizer.step() with the step's loss (summed over processes)."""
        flag = (~torch.isfinite(loss)).int() * LOSS + (~torch.isfinite(grad_norm.to(loss.device))).int() * GRAD
        if not self.deferred:
            self._raise_if(int(flag), step, epoch)
            return
        self.check()  # the previous step's verdict, long since computed
        # an attribute torch's fused AdamW reads (GradScaler sets it) but Optimizer does not declare
        self.optimizer.found_inf = (flag > 0).float()  # type: ignore[attr-defined]
        self._host.copy_(flag, non_blocking=True)
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        self._pending = (step, epoch, event)

    def check(self) -> None:
        """Raise if a step whose verdict is still in flight was bad (waits for that step only)."""
        if self._pending is None:
            return
        step, epoch, event = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        self._raise_if(int(self._host), step, epoch)

    def _raise_if(self, flag: int, step: int, epoch: int) -> None:
        if not flag:
            return
        from bigmodel_core.errors import TrainingError

        what = "loss" if flag & LOSS else "gradient norm"
        raise TrainingError(
            f"non-finite {what} at step {step} (epoch {epoch}); the weights were not updated "
            f"and the last checkpoint is kept. {self.hint}"
        )
