"Models: a training step and checkpoints, the parts a notebook cannot test well."
import io
import pytest, torch
from torch import nn
from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
from wavescat.models import get_model, scat_resnet18_v1, n_params, RESNET18_CIFAR_PARAMS
from wavescat.train import load_model_state

def test_scat_v1_forward_backward_batch_of_4():
    torch.manual_seed(0)
    m = scat_resnet18_v1(L=4).train()
    stem = m.conv1  # the ScatStem
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = stem.conv.weight.detach().clone(), stem.upsample.weight.detach().clone()
    filters = [b.clone() for b in stem.scattering.buffers()]
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert all(b.grad is None and not b.requires_grad for b in stem.scattering.buffers())
    opt.step()
    assert not torch.equal(before[0], stem.conv.weight) and not torch.equal(before[1], stem.upsample.weight)
    assert all(torch.equal(a, b) for a, b in zip(filters, stem.scattering.buffers()))  # the scattering stays fixed

def _through_bytes(state: dict) -> dict:
    "Save and load, as a checkpoint file would go."
    buf = io.BytesIO(); torch.save(state, buf); buf.seek(0)
    return torch.load(buf, weights_only=True)

@pytest.mark.parametrize('name,kw', [('scat_v1', dict(L=4)), ('scat_v1', dict(L=13)), ('scat_v1', dict(L=4, learnable=True, init='random')), ('resnet18', {})])
def test_state_dict_roundtrip_gives_identical_outputs(name, kw):
    torch.manual_seed(0)
    m = get_model(name, **kw)
    x = torch.randn(2, 3, 32, 32)
    m.train(); m(x)  # move the batch-norm running statistics off their initial values
    torch.manual_seed(1)
    fresh = get_model(name, **kw)
    fresh.load_state_dict(_through_bytes(m.state_dict()))  # strict: same keys (learnable filters included)
    m.eval(); fresh.eval()
    with torch.no_grad(): assert torch.equal(m(x), fresh(x))

def test_fixed_filters_are_neither_parameters_nor_state():
    m = scat_resnet18_v1(L=4)
    assert not any('scattering' in k for k in m.state_dict())  # constants of (J, L, shape): rebuilt, not saved
    assert not any('scattering' in n for n, _ in m.named_parameters())
    assert n_params(m) == RESNET18_CIFAR_PARAMS - 22 * 15  # a scattering channel: 5 parameters instead of 27

def test_learnable_filters_are_parameters_and_state():
    m = scat_resnet18_v1(L=4, learnable=True)
    names = [f'conv1.scattering.{k}' for k in ('theta', 'xi', 'sigma', 'slant')]
    assert [n for n, _ in m.named_parameters() if 'scattering' in n] == names
    assert all(k in m.state_dict() for k in names)
    assert n_params(m) == RESNET18_CIFAR_PARAMS - 22 * 15 + 4 * 4

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
