"Models: what their notebook (02_models) cannot test, because it needs a higher module (the trainer's checkpoint loading)."
import io
import torch
from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
from wavescat.models import scat_resnet18_v1
from wavescat.train import load_model_state

def _through_bytes(state: dict) -> dict:
    "Save and load, as a checkpoint file would go."
    buf = io.BytesIO(); torch.save(state, buf); buf.seek(0)
    return torch.load(buf, weights_only=True)

def test_checkpoint_from_the_kymatio_backend_still_loads():
    "Checkpoints written before the fast scattering carry kymatio's filter buffers (under `.scattering.kymatio.`); they load, minus those."
    torch.manual_seed(0)
    model = scat_resnet18_v1(L=4)
    kymatio = ScatteringTorch2D(1, (32, 32), L=4, max_order=1)  # what the old `backend='kymatio'` module held
    state = _through_bytes({**model.state_dict(), **{f'conv1.scattering.kymatio.{k}': v for k, v in kymatio.state_dict().items()}})
    assert any('.scattering.kymatio.' in k for k in state)
    torch.manual_seed(1)
    new = scat_resnet18_v1(L=4)
    load_model_state(new, state)
    x = torch.randn(2, 3, 32, 32)
    model.eval(); new.eval()
    with torch.no_grad(): assert torch.equal(new(x), model(x))
