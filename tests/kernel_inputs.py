"""Random inputs shared by the kernel tests (reference and Triton): awkward sizes, masked tails."""

import torch

B, N, M, D = 3, 63, 17, 100


def unit(*shape: int, gen: torch.Generator) -> torch.Tensor:
    """Random L2-normalised rows."""
    x = torch.randn(*shape, generator=gen)
    return x / x.norm(dim=-1, keepdim=True)


def assign_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x [B, N, D]``, ``k [B, M, D]``, ``valid [B, M]``, ``x_mask [B, N]`` with a masked tail of
    slots, a stream with one valid slot only (no second best) and a masked tail of tokens."""
    gen = torch.Generator().manual_seed(seed)
    x, k = unit(B, N, D, gen=gen), unit(B, M, D, gen=gen)
    valid = torch.rand(B, M, generator=gen) > 0.3
    valid[1, 5:] = False  # a masked tail of slots
    valid[2] = False
    valid[2, 4] = True  # one valid slot only: no second
    x_mask = torch.ones(B, N, dtype=torch.bool)
    x_mask[0, 50:] = False  # a masked tail of tokens
    return x, k, valid, x_mask
