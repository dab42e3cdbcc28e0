"""Colored copies, the image classifiers' training loop and the color-accuracy metric."""
import numpy as np
import pytest
import torch
from PIL import Image

import mnog
from mnog import training
from mnog.colors import CIFAR_NORM, ERASURE_RGB, PALETTE, ColoredImages, colorize, concat, luminance, render
from mnog.metrics import color_accuracy, erasure_metrics, scoring
from mnog.sweep import pareto_front
from mnog.models import ColorResNet
from mnog.training import Phase, SGDConfig, random_resized_crop_flip, train_classifier


def pil_palette_copy(image: np.ndarray, rgb) -> np.ndarray:
    """The authors' ColorTransform10, with PIL: L scaled per channel by c / 255."""
    gray = Image.fromarray(image).convert("L")
    channels = [gray.point(lambda p, c=c: p * (c / 255)) for c in rgb]
    return np.asarray(Image.merge("RGB", channels))


def pil_erasure_copy(image: np.ndarray, color: str) -> np.ndarray:
    """The authors' ColorTransform: gray (L, L, L), red (L, 0, 0), green (0, L, 0)."""
    gray = Image.fromarray(image).convert("L")
    zero = Image.new("L", gray.size)
    bands = {"gray": (gray, gray, gray), "red": (gray, zero, zero), "green": (zero, gray, zero)}[color]
    return np.asarray(Image.merge("RGB", bands))


@pytest.fixture
def rgb_images():
    return torch.randint(0, 256, (12, 3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_luminance_is_pils_convert_L(rgb_images):
    for image, ours in zip(rgb_images, luminance(rgb_images)):
        assert (np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).convert("L")) == ours[0].numpy()).all()


def test_palette_copies_equal_the_authors_pil_transform(rgb_images):
    for k, rgb in enumerate(PALETTE):
        ours = colorize(rgb_images, torch.full((len(rgb_images),), k), PALETTE)
        for image, mine in zip(rgb_images, ours):
            assert (pil_palette_copy(image.permute(1, 2, 0).numpy(), rgb) == mine.permute(1, 2, 0).numpy()).all(), k


def test_gray_red_green_copies_equal_the_authors_pil_transform(rgb_images):
    for k, name in enumerate(("gray", "red", "green")):
        ours = colorize(rgb_images, torch.full((len(rgb_images),), k), ERASURE_RGB)
        for image, mine in zip(rgb_images, ours):
            assert (pil_erasure_copy(image.permute(1, 2, 0).numpy(), name) == mine.permute(1, 2, 0).numpy()).all()


def test_render_normalizes_and_colors_per_image(rgb_images):
    colors = torch.arange(len(rgb_images)) % 10
    x = render(rgb_images, colors, PALETTE, CIFAR_NORM)
    assert x.shape == (12, 3, 9, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    blue = colors == 2                       # blue: red and green channels are 0 → normalized −1
    assert (x[blue][:, :2] == -1).all()


def test_one_channel_images_are_their_own_luminance():
    images = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    red = colorize(images, torch.zeros(4, dtype=torch.long), PALETTE)
    assert (red[:, 0] == images[:, 0]).all() and (red[:, 1:] == 0).all()


def tiny_set(n=64, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return ColoredImages(images, colors=labels, labels=labels, palette=PALETTE, norm=CIFAR_NORM,
                         weights=torch.rand(n, generator=g))


def test_concat_and_take_keep_everything_aligned():
    a, b = tiny_set(8), tiny_set(4, seed=1)
    both = concat(a, b)
    assert len(both) == 12 and torch.equal(both.weights[8:], b.weights) and torch.equal(both.images[:8], a.images)
    part = both.take(torch.tensor([9, 0]))
    assert torch.equal(part.images[0], b.images[1]) and torch.equal(part.targets(), torch.tensor([1, 0]))


def test_training_resumes_from_its_checkpoint_exactly(tmp_path, monkeypatch):
    data = tiny_set()
    sgd = SGDConfig(lr=0.05, step_size=1, gamma=0.5, batch_size=16)
    phases = [Phase(data, 1), Phase(data, 2, head_weights=(1.0,))]

    def model():
        torch.manual_seed(0)
        return ColorResNet(18, heads=(4,), width=4)

    straight = model()
    train_classifier(straight, phases, sgd, seed=3)

    interrupted, checkpoint = model(), tmp_path / "ckpt.pt"
    calls = {"n": 0}
    real_epoch = training._train_epoch

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(interrupted, phases, sgd, seed=3, checkpoint=checkpoint)
    monkeypatch.setattr(training, "_train_epoch", real_epoch)
    assert checkpoint.exists()
    resumed = model()
    train_classifier(resumed, phases, sgd, seed=3, checkpoint=checkpoint)
    assert not checkpoint.exists()
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_training_learns_and_the_schedule_spans_the_phases():
    data = tiny_set(n=128)
    net = ColorResNet(18, heads=(4,), width=8)
    before = color_accuracy(net, data.images, PALETTE[:4], CIFAR_NORM)
    sgd = SGDConfig(lr=0.05, step_size=2, gamma=0.1, batch_size=32)
    train_classifier(net, [Phase(data, 2), Phase(data, 4)], sgd, seed=0)
    # Class k is shown in color k: a model that learned the colors names them.
    assert color_accuracy(net, data.images, PALETTE[:4], CIFAR_NORM) > max(before, 0.6)


def test_random_resized_crop_keeps_shape_and_flips():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = random_resized_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.isfinite(out).all()
    identity = random_resized_crop_flip(images, torch.Generator().manual_seed(1), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert any(torch.allclose(o, i, atol=1e-4) or torch.allclose(o, i.flip(-1), atol=1e-4)
               for o, i in zip(identity, images))


def test_color_accuracy_counts_predictions_of_the_color_shown():
    class ColorReader(torch.nn.Module):
        """Predicts the palette color from the mean channel values (a perfect color model)."""
        def forward(self, x):
            rgb = ((x.mean((2, 3)) * 0.5 + 0.5) > 0.25).float()              # channels on/off
            palette = (torch.tensor(PALETTE[:3]) > 0).float()
            return -torch.cdist(rgb, palette)

    images = torch.full((5, 3, 4, 4), 200, dtype=torch.uint8)
    assert color_accuracy(ColorReader(), images, PALETTE[:3], CIFAR_NORM) == 1.0


def test_narrow_resnet_scales_every_layer():
    net = ColorResNet(18, heads=(10, 3), width=16)
    assert net.trunk.conv1.out_channels == 16 and net.trunk.layer4[1].conv2.out_channels == 128
    outputs = net(torch.randn(2, 3, 28, 28))
    assert [o.shape for o in outputs] == [(2, 10), (2, 3)]
    full = ColorResNet(18, heads=(10,))
    assert sum(p.numel() for p in full.trunk.parameters()) == 11_168_832   # torchvision's ResNet-18 trunk


def test_label_erasure_recipes_follow_spec_7():
    data = tiny_set(8)
    sgd, phases = training.label_erasure_recipe("cifar10", data)
    assert (sgd.lr, sgd.weight_decay, sgd.batch_size, sgd.step_size, sgd.gamma) == (3e-2, 5e-4, 256, 50, 0.1)
    assert [p.epochs for p in phases] == [100]
    sgd, phases = training.label_erasure_recipe("tiny_imagenet", data)
    assert (sgd.lr, sgd.weight_decay, sgd.batch_size, sgd.step_size, sgd.gamma) == (0.1, 1e-4, 512, 25, 0.3)
    assert [(p.epochs, p.head_weights, p.augment) for p in phases] == [(10, (1.0, 0.0), True), (90, None, True)]
    with pytest.raises(ValueError, match="cifar10 or tiny_imagenet"):
        training.label_erasure_recipe("fashion_mnist", data)


def test_a_zero_head_weight_trains_that_head_not_at_all():
    labels = torch.arange(32) % 4
    data = ColoredImages(torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8), colors=labels % 3,
                         labels=(labels, labels % 3), palette=ERASURE_RGB, norm=CIFAR_NORM)
    net = ColorResNet(18, heads=(4, 3), width=4)
    color_head = net.heads[1].weight.detach().clone()
    class_head = net.heads[0].weight.detach().clone()
    train_classifier(net, [Phase(data, 1, head_weights=(1.0, 0.0))], SGDConfig(lr=0.1, weight_decay=0.0,
                                                                                batch_size=8), seed=0)
    assert torch.equal(net.heads[1].weight, color_head) and not torch.equal(net.heads[0].weight, class_head)


def test_erasure_metrics_match_their_definition():
    class Fixed(torch.nn.Module):
        """Class logits favour class 1; the color head says gray with probability softmax(2, 0, 0)[0]."""
        def forward(self, x):
            n = len(x)
            return (torch.tensor([[0.0, 5.0, 0.0]]).expand(n, -1), torch.tensor([[2.0, 0.0, 0.0]]).expand(n, -1))

    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([1, 1, 0, 2, 1, 0])
    quality, error = erasure_metrics(Fixed(), images, labels, CIFAR_NORM, batch_size=4)
    p_gray = torch.softmax(torch.tensor([2.0, 0.0, 0.0]), 0)[0]
    assert quality == 3 / 6                                       # class right (label 1) and color gray
    assert abs(error - float((1 - p_gray) ** 2)) < 1e-6           # every copy gets the same p(gray)


def test_bf16_scoring_keeps_modes_and_nearly_every_prediction():
    """Evaluation in bf16 autocast: the metrics come out in float32 and close to
    float32 evaluation's; the model's train/eval mode is restored; a bad precision is one line."""
    torch.manual_seed(0)
    net = ColorResNet(18, heads=(10, 3), width=8).train()
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    full = erasure_metrics(net, images, labels, CIFAR_NORM)
    half = erasure_metrics(net, images, labels, CIFAR_NORM, precision="bfloat16")
    assert net.training and all(m.training for m in net.modules())
    assert full[0] == pytest.approx(half[0], abs=3 / 64) and full[1] == pytest.approx(half[1], abs=0.02)
    one_head = ColorResNet(18, heads=(4,), width=8)
    assert color_accuracy(one_head, images, PALETTE[:4], CIFAR_NORM, precision="bfloat16") == pytest.approx(
        color_accuracy(one_head, images, PALETTE[:4], CIFAR_NORM), abs=0.05)
    with scoring(net, "bfloat16"):
        assert not net.training and torch.is_inference_mode_enabled()
        assert net(torch.randn(2, 3, 16, 16))[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        color_accuracy(net, images, PALETTE[:4], CIFAR_NORM, precision="half")


def test_pareto_front_keeps_the_non_dominated_points_by_error():
    accuracy = np.array([0.9, 0.8, 0.95, 0.7, 0.9])
    error = np.array([0.2, 0.1, 0.3, 0.1, 0.25])
    front = pareto_front(accuracy, error)
    assert front.tolist() == [1, 0, 2]   # (0.8, 0.1) beats (0.7, 0.1); (0.9, 0.2) beats (0.9, 0.25)


def test_an_empty_class_balanced_subsample_only_scales_theta(two_head_data_like):
    # More classes in the batch than n_pert: n_pert // classes = 0 (the paper's formula, as
    # on Tiny ImageNet), so G is empty and the projection step is θ ← (1 − s)·θ.
    x, labels = two_head_data_like
    net = ColorResNet(18, heads=(20, 3), width=4).eval()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.warns(UserWarning, match="subsample is empty"):
        mnog.unlearn(net, "MinNorm-OG", forget=(x[:4], (labels[:4], labels[:4] % 3)),
                     retain=(x, (labels, labels % 3)), loss="cross_entropy", epochs=1, eta=1e-12,
                     lambda_reg=0.3, gamma_reg=0.5, t_gd=0, t_proj=1, n_pert=10)
    for p, q in zip(net.parameters(), before):
        torch.testing.assert_close(p, 0.7 * q, rtol=1e-4, atol=1e-6)


@pytest.fixture
def two_head_data_like():
    return torch.randn(40, 3, 8, 8), torch.arange(40) % 20               # 20 classes, 2 samples each
