from typing import Optional

import torch

from . import StreamLike, Subscription, Tensor

def receive(sub: Subscription, timeout: Optional[float] = None,
            stream: StreamLike = None) -> torch.Tensor: ...
def view(tensor: Tensor, stream: StreamLike = None) -> torch.Tensor: ...
