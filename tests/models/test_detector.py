"""The digit detector's mixture: the net's first label kept, non-digits spread towards even."""

import pytest
import torch

from models.detector import mixed_log_probs
from models.inception import InceptionNet, InceptionNetConfig
from models.inception_fold import fold_inception


def _net() -> InceptionNet:
    torch.manual_seed(0)
    return InceptionNet(InceptionNetConfig(detector=16)).eval()


def test_the_mixture_is_a_distribution_with_the_nets_first_label() -> None:
    net = _net()
    images = torch.randn(12, 1, 28, 28)
    with torch.inference_mode():
        features = net.features(images)
        logits = net.classify(features)
        mixed = net(images)
    torch.testing.assert_close(mixed.exp().sum(1), torch.ones(12))
    assert torch.equal(mixed.argmax(1), logits.argmax(1))


@pytest.mark.parametrize("log_odds", [-40.0, 0.0, 40.0])
def test_the_detectors_odds_set_how_far_the_answer_spreads(log_odds: float) -> None:
    logits = torch.tensor([[4.0] + [0.0] * 9])
    plain = torch.softmax(logits, 1).max().item()  # 0.858
    top = mixed_log_probs(logits, torch.tensor([log_odds])).exp().max().item()
    # a sure non-digit: even over the ten; a sure digit: the net's own answer; even odds: halfway
    expected = {-40.0: 0.1, 0.0: (plain + 0.1) / 2, 40.0: plain}[log_odds]
    assert top == pytest.approx(expected)


def test_sure_answers_do_not_underflow() -> None:
    logits = torch.tensor([[200.0] + [0.0] * 9])
    mixed = mixed_log_probs(logits, torch.tensor([-200.0]))
    assert torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed.exp(), torch.full((1, 10), 0.1))


def test_the_fold_keeps_the_detector() -> None:
    net = _net()
    images = torch.randn(10, 1, 28, 28)
    with torch.inference_mode():
        folded = fold_inception(net, images[:4])
        torch.testing.assert_close(folded(images), net(images), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(folded.features(images), net.features(images))


def test_a_net_without_a_detector_returns_its_logits() -> None:
    torch.manual_seed(0)
    net = InceptionNet(InceptionNetConfig()).eval()
    images = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(net(images), net.classify(net.features(images)))
