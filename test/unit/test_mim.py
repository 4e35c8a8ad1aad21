"""Masked autoencoder: mask statistics, loss only on hidden patches, loss falls, reconstruction format."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mim_perception.nets import build_mim  # noqa: E402
from mim_perception.nets.convnext import ConvNeXt  # noqa: E402
from mim_perception.nets.mim import MaskedAutoencoder, patch_loss, patch_norm, random_mask  # noqa: E402
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene  # noqa: E402

F = torch.nn.functional


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads oversubscribe and run several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def frames(n: int = 4) -> torch.Tensor:
    fr = SyntheticScene(SceneConfig(width=320, height=192, frames=n, seed=3)).frames()
    return torch.from_numpy(np.stack([f.image for f in fr])).permute(0, 3, 1, 2).contiguous()


def test_mask_ratio_and_randomness() -> None:
    g = torch.Generator().manual_seed(0)
    mask = random_mask(8, 12, 20, 0.6, generator=g)                                   # 384×640 input
    assert mask.shape == (8, 1, 12, 20) and mask.dtype == torch.bool
    assert torch.equal(mask.sum((1, 2, 3)), torch.full((8,), 96))                    # exactly 40 % visible
    assert not torch.equal(mask[0], mask[1])
    mae = build_mim("convnext_smoke")
    _, _, m = mae(frames(2))
    assert abs(1 - float(m.float().mean()) - 0.6) < 0.02


def test_loss_only_on_masked_patches() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 48, 3, 5, generator=g), torch.randn(2, 48, 3, 5, generator=g)
    mask = random_mask(2, 3, 5, 0.6, generator=g)
    loss, per_image = patch_loss(pred, target, mask)
    loss_vis, _ = patch_loss(torch.where(mask, pred + 100, pred), target, mask)
    loss_hid, _ = patch_loss(torch.where(mask, pred, pred + 1), target, mask)
    assert torch.equal(loss, loss_vis) and float(loss_hid) > float(loss)
    assert torch.allclose(per_image.mean(), loss)                                      # same count hidden per image
    # end to end: the model's loss is exactly patch_loss over its own prediction and per-patch normalised pixels
    mae = build_mim("convnext_smoke")
    x = frames(2)
    loss_m, pred_img, m = mae(x, generator=torch.Generator().manual_seed(2))
    target_p = patch_norm(F.pixel_unshuffle(mae.normalize(x), 32))[0]
    assert torch.allclose(loss_m, patch_loss(F.pixel_unshuffle(pred_img, 32), target_p, m)[0])


def test_mim_loss_falls() -> None:
    """30 AdamW steps on 4 synthetic frames (smoke backbone, ~3 s): the masked-patch loss must drop."""
    torch.manual_seed(0)
    mae = MaskedAutoencoder(ConvNeXt((8, 16, 32, 64), (1, 1, 1, 1)), decoder_dim=32)
    opt = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    x, g = frames(4), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss, _, _ = mae(x, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_reconstruct_format_and_visible_patches() -> None:
    mae = build_mim("convnext_smoke").eval()
    x = frames(2)
    mask = random_mask(2, 6, 10, 0.6, generator=torch.Generator().manual_seed(4))
    rec = mae.reconstruct(x, mask)
    assert rec.dtype == torch.uint8 and rec.shape == x.shape
    vis = mask.repeat_interleave(32, 2).repeat_interleave(32, 3).expand_as(x)
    assert int((rec.int() - x.int()).abs()[vis].max()) <= 1                          # visible patches are the input
    assert mae.score(x, mask).shape == (2,)


def test_resnet_backbone_pretrains_too() -> None:
    loss, pred, mask = build_mim("resnet_smoke")(frames(2))
    assert bool(torch.isfinite(loss)) and pred.shape == (2, 3, 192, 320) and mask.shape == (2, 1, 6, 10)


def test_bad_configuration_raises() -> None:
    with pytest.raises(ValueError, match="patch"):
        MaskedAutoencoder(ConvNeXt((8, 16, 32, 64), (1, 1, 1, 1)), patch=16)
    with pytest.raises(ValueError, match="mask ratio"):
        MaskedAutoencoder(ConvNeXt((8, 16, 32, 64), (1, 1, 1, 1)), mask_ratio=1.0)
