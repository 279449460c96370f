"""Progress of a training run: a tqdm bar with tokens/s and ETA on a terminal, plain lines otherwise.

Under DVC or the Prefect flow, output is a pipe: a bar redrawn with carriage returns would be noise
in the logs, so a line like `step 120/900 (13%) epoch 1 loss 0.4512 24.1k tok/s eta 3m05s` is
printed at most every `every_seconds` instead.
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else (f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}")


class Progress:
    def __init__(
        self, total: int, initial: int = 0, enabled: bool = True, every_seconds: float = 15.0, tty: bool | None = None
    ) -> None:
        self.total, self.n, self.enabled, self.every = total, initial, enabled, every_seconds
        self.start_n, self.t0, self.last_print = initial, time.perf_counter(), time.perf_counter()
        self.info: dict = {}
        self.bar = None
        tty = sys.stderr.isatty() if tty is None else tty
        if enabled and tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last_print >= self.every:
            self.print_line()

    def show(self, epoch: int, loss: float, tokens_per_second: float) -> None:
        self.info = {"epoch": epoch, "loss": loss, "tps": tokens_per_second}
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {epoch} loss {loss:.4f} {_rate(tokens_per_second)} tok/s", refresh=False)

    def eta_seconds(self) -> float:
        done = self.n - self.start_n
        if done <= 0:
            return float("nan")
        return (time.perf_counter() - self.t0) / done * (self.total - self.n)

    def line(self) -> str:
        pct = 100.0 * self.n / max(1, self.total)
        parts = [f"step {self.n}/{self.total} ({pct:.0f}%)"]
        if self.info:
            parts.append(f"epoch {self.info['epoch']} loss {self.info['loss']:.4f} {_rate(self.info['tps'])} tok/s")
        eta = self.eta_seconds()
        parts.append(f"eta {_duration(eta)}" if eta == eta else "eta ?")
        return " ".join(parts)

    def print_line(self) -> None:
        print(self.line(), flush=True)
        self.last_print = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
