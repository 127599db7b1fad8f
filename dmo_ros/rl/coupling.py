"""The DMO trick (paper Section III-F; DESIGN.md "DMO step"): the global model's value, the
local model's gradient.

    s_{t+1} = f_local(s_t, a_t) + sg( filter(o_{t+1}) - f_local(s_t, a_t) )

Forward, the actor sees the RSSM's posterior on the frame o_{t+1} that the diffusion model
(or the simulator) produced; backward, d s_{t+1} / d (s_t, a_t) is the RSSM prior's
Jacobian. The policy gradient never enters the forward model or the image encoder.
"""

from __future__ import annotations

from torch import Tensor

State = dict[str, Tensor]


def couple(local: Tensor, observed: Tensor) -> Tensor:
    """The value of `observed`, the gradient of `local`."""
    return local + (observed - local).detach()


def couple_state(prior: State, posterior: State) -> State:
    """RSSM states: the deterministic part is the prior's own (the posterior shares it), the
    stochastic part is coupled. `logits` (no gradient use) are the posterior's."""
    return {
        "deter": prior["deter"],
        "stoch": couple(prior["stoch"], posterior["stoch"]),
        "logits": posterior["logits"].detach(),
    }
