"""The options of a training run (:class:`TrainConfig`) — what ``train_cifar.py`` parses and what
``config.json`` and every checkpoint record."""
from __future__ import annotations

import dataclasses

from ..attention import BA2MOptions

BA2M_DEFAULTS = BA2MOptions()  # the command line's BA²M defaults are the library's

# options that may differ when a run is resumed or a checkpoint evaluated (they do not change
# the numbers a run computes, or say where things live)
RUNTIME_OPTIONS = ("data_dir", "data_url", "backend", "out", "progress")
SYNTHETIC_DATA_SEED = 0  # the synthetic images do not depend on --seed (like a fixed real data set)


@dataclasses.dataclass
class TrainConfig:
    # data (the argument groups of train_cifar.py --help)
    dataset: str = "synthetic"
    data_dir: str | None = None
    data_url: str | None = None
    subset: int | None = None
    # model
    model: str = "smallcnn"
    attention: str = "ba2m"
    ba2m_placement: str = BA2M_DEFAULTS.placement
    init: str = "he"
    zero_init_residual: bool = False
    ba2m_sar: str = BA2M_DEFAULTS.sar_activation
    ba2m_temperature: float = BA2M_DEFAULTS.temperature
    ba2m_normalisation: str = BA2M_DEFAULTS.normalisation
    # optimisation
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    loss: str = "ce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    seed: int = 0
    # run
    backend: str = "numpy"
    out: str | None = None
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From a saved config (a checkpoint's, or config.json); one written before ``ba2m_sar`` existed
        used the raw SAR ("none")."""
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        # (config.json writes an inactive option as null: it takes its default)
        known = {k: v for k, v in d.items() if k in fields and (v is not None or fields[k] is None)}
        if "ba2m_sar" not in d and "ba2m_normalisation" in d:
            known["ba2m_sar"] = "none"
        return cls(**known)

    def inactive_options(self) -> dict:
        """``{field: why}`` for each option that has no effect in this run (BA²M options without BA²M,
        ``focal_gamma`` without the focal loss, the CIFAR-100 download options with another data set,
        ``zero_init_residual`` without a ResNet). The command line refuses them when given;
        config.json records them as null."""
        why = {}
        if self.attention != "ba2m":
            why.update(dict.fromkeys(("ba2m_sar", "ba2m_temperature", "ba2m_normalisation"),
                                     f"it is a BA²M option and --attention is {self.attention}"))
        if self.attention == "none":
            why["ba2m_placement"] = "it places the attention and --attention is none"
        if self.attention == "bam":
            why["ba2m_placement"] = "BAM goes where the resolution changes (between stages), which it does not move"
        if self.loss != "focal":
            why["focal_gamma"] = f"it is the focal loss's parameter and --loss is {self.loss}"
        if self.dataset != "cifar100":
            why.update(dict.fromkeys(("data_dir", "data_url"),
                                     f"only --dataset cifar100 reads it and --dataset is {self.dataset}"))
        if not self.model.startswith("resnet"):
            why["zero_init_residual"] = f"only ResNets have residual branches and --model is {self.model}"
        return why

    def ba2m_options(self) -> BA2MOptions:
        """The one options object of the model's attention modules: the placement, and for BA²M
        its reading (an SE block or no attention ignores the rest, so it is left at the defaults)."""
        if self.attention != "ba2m":
            return BA2MOptions(placement=self.ba2m_placement)
        return BA2MOptions(placement=self.ba2m_placement, temperature=float(self.ba2m_temperature),
                           normalisation=self.ba2m_normalisation, sar_activation=self.ba2m_sar)

    def architecture(self, num_classes: int) -> dict:
        return {"model": self.model, "attention": self.attention, "ba2m_placement": self.ba2m_placement,
                "num_classes": int(num_classes)}
