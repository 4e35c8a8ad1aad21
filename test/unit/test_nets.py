"""Backbones, neck, heads and the DetSegModel contract: shapes on non-square inputs, sizes, masking, GRN, registry."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mim_perception.nets import DetSegModel, available_models, build_backbone, build_mim, build_model  # noqa: E402
from mim_perception.nets.convnext import GRN, ConvNeXt  # noqa: E402

SIZES = [(192, 320), (256, 448), (384, 640)]
C, S = 6, 10


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads oversubscribe and run several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def smoke() -> DetSegModel:
    torch.manual_seed(0)
    return build_model("convnext_smoke", C, S).eval()


def image(h: int, w: int, b: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("name", ["convnext_smoke", "resnet_smoke"])
def test_output_shapes_non_square(name: str, h: int, w: int) -> None:
    model = build_model(name, C, S).eval()
    with torch.no_grad():
        out = model(image(h, w))
        feats = model.backbone(model.normalize(image(h, w)))
    a = sum((h // s) * (w // s) for s in (8, 16, 32))
    assert out["det"].shape == (2, a, 4 + 1 + C)
    assert out["seg"].shape == (2, S, h // 4, w // 4)
    assert out["embed"].shape == (2, model.backbone.channels[-1])
    assert [f.shape[-2:] for f in feats] == [(h // r, w // r) for r in model.backbone.downsample_ratios]
    assert [f.shape[1] for f in feats] == model.backbone.channels
    assert bool((out["det"][..., :4] >= 0).all()), "ltrb distances are decoded, non-negative pixels"


def test_points_are_row_major_cell_centres(smoke: DetSegModel) -> None:
    pts, strides = smoke.points(64, 96)
    assert pts.shape == (8 * 12 + 4 * 6 + 2 * 3, 2) and strides.shape == (pts.shape[0],)
    assert pts[:3].tolist() == [[4, 4], [12, 4], [20, 4]] and pts[12].tolist() == [4, 12]
    assert pts[96].tolist() == [8, 8] and strides[96] == 16 and strides[-1] == 32 and pts[-1].tolist() == [80, 48]


def test_export_forward_contract(smoke: DetSegModel) -> None:
    x = image(192, 320)
    with torch.no_grad():
        boxes, scores, classes, seg, embed = smoke.export_forward(x)
        out = smoke(x)
    k = smoke.export_topk
    assert boxes.shape == (2, k, 4) and scores.shape == (2, k) and classes.shape == (2, k) and embed.shape == (2, 64)
    assert seg.dtype == torch.uint8 and seg.shape == (2, 48, 80)
    assert torch.equal(seg.long(), out["seg"].argmax(1))
    assert bool((scores[:, :-1] >= scores[:, 1:]).all()), "top-k sorted best first"
    assert int(classes.min()) >= 0 and int(classes.max()) < C
    assert bool((boxes[..., 0::2] >= 0).all() & (boxes[..., 0::2] <= 320).all() & (boxes[..., 1::2] <= 192).all())
    joint = torch.sigmoid(out["det"][..., 5:]) * torch.sigmoid(out["det"][..., 4:5])
    assert torch.allclose(scores[:, 0], joint.flatten(1).max(1).values)


@pytest.mark.parametrize(("name", "lo", "hi"), [("convnext_atto", 3.3e6, 3.5e6), ("convnext_atto_cpu", 3.3e6, 3.5e6),
                                                ("convnext_femto", 4.7e6, 5.0e6), ("convnext_pico", 8.4e6, 8.7e6),
                                                ("resnet18", 11.0e6, 11.3e6)])
def test_backbone_parameter_counts(name: str, lo: float, hi: float) -> None:
    n = sum(p.numel() for p in build_backbone(name).parameters())
    assert lo <= n <= hi, f"{name}: {n / 1e6:.3f} M parameters"


def test_full_atto_model_size_and_cpu_variant() -> None:
    model = build_model("convnext_atto", C, S)
    assert 3.4e6 < sum(p.numel() for p in model.parameters()) < 3.7e6
    cpu = build_backbone("convnext_atto_cpu")
    assert not any(isinstance(m, GRN) for m in cpu.modules())
    assert {m.approximate for m in cpu.modules() if isinstance(m, torch.nn.GELU)} == {"tanh"}


@pytest.mark.parametrize("name", ["convnext_smoke", "resnet_smoke"])
def test_all_visible_mask_equals_unmasked(name: str) -> None:
    bb = build_backbone(name).eval()
    x = torch.randn(2, 3, 192, 320)
    keep = torch.ones(2, 1, 6, 10, dtype=torch.bool)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(bb(x), bb(x, keep), strict=True))


def test_masked_pixels_leak_nowhere() -> None:
    """Sparse-conv emulation: what lies under a masked patch changes no output, and masked cells stay zero."""
    torch.manual_seed(1)
    bb = ConvNeXt((8, 16, 32, 64), (1, 1, 2, 1)).eval()
    mask = torch.rand(1, 1, 6, 10) > 0.5
    x = torch.randn(1, 3, 192, 320)
    hidden = ~mask.repeat_interleave(32, 2).repeat_interleave(32, 3)
    y = x + 5 * torch.randn_like(x) * hidden
    with torch.no_grad():
        fa, fb = bb(x, mask), bb(y, mask)
        unmasked = bb(x)
    for a, b in zip(fa, fb, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert float(fa[-1].abs().sum((0, 1))[~mask[0, 0]].max()) == 0.0
    assert not torch.allclose(fa[-1], unmasked[-1]), "the mask must actually change the visible features"


def test_grn_identity_at_init_and_normalises_across_channels() -> None:
    grn = GRN(4)
    x = torch.randn(2, 5, 7, 4)
    assert torch.equal(grn(x), x)
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    x = torch.ones(1, 3, 3, 4) * torch.tensor([1.0, 1.0, 1.0, 5.0])       # channel 3 has 5× the spatial L2 norm
    y = grn(x)
    nx = torch.tensor([1.0, 1.0, 1.0, 5.0]) / 2.0                          # ||x_c|| / mean_c ||x_c||
    assert torch.allclose(y, x * nx + x, atol=1e-5)
    # zero (masked) positions do not change the statistics: sparse-equivalent
    padded = torch.cat([x, torch.zeros(1, 3, 3, 4)], 1)
    assert torch.allclose(grn(padded)[:, :3], y, atol=1e-5)


def test_registry_names_and_errors() -> None:
    assert {"convnext_atto", "convnext_atto_cpu", "convnext_femto", "convnext_pico", "resnet18"} <= set(available_models())
    with pytest.raises(KeyError, match="unknown model 'vit_huge'.*convnext_atto"):
        build_model("vit_huge", C, S)
    with pytest.raises(KeyError):
        build_mim("nope")
    with pytest.raises(ValueError, match="at least one class"):
        build_model("convnext_smoke", 0, S)
    assert build_model("convnext_smoke", C, S).name == "convnext_smoke"


def test_input_contract_errors(smoke: DetSegModel) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        smoke(torch.zeros(1, 3, 200, 320, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B×3×H×W"):
        smoke(torch.zeros(1, 1, 192, 320, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        smoke(torch.zeros(1, 3, 192, 320, dtype=torch.int32))


def test_mim_backbone_loads_strictly_into_detector() -> None:
    mae = build_mim("convnext_smoke")
    model = build_model("convnext_smoke", C, S)
    result = model.backbone.load_state_dict(mae.backbone.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert "normalize.mean" not in model.state_dict(), "normalisation constants are not checkpoint state"


@pytest.mark.slow
def test_export_forward_onnx_parity(tmp_path, smoke: DetSegModel) -> None:
    """export_forward exports statically (dynamo, opset 18) and ORT reproduces torch (~5 s)."""
    ort = pytest.importorskip("onnxruntime")
    from mim_perception.nets import ExportModule

    x = image(192, 320, b=1)
    prog = torch.onnx.export(ExportModule(smoke), (x,), dynamo=True, opset_version=18, external_data=False,
                             input_names=["image"], output_names=list(ExportModule.output_names), verbose=False)
    prog.save(str(tmp_path / "m.onnx"))
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in smoke.export_forward(x)]
    assert [g.shape for g in got] == [r.shape for r in ref] and got[3].dtype == ref[3].dtype
    assert abs(got[1] - ref[1]).max() < 1e-5 and abs(got[4] - ref[4]).max() < 1e-4
    assert (got[3] == ref[3]).mean() > 0.999
