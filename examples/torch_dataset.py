"""A model that is not in mexkit, trained leave-one-subject-out on a mexkit store.
Usage: python examples/torch_dataset.py STORE [EPOCHS]  (STORE: e.g. demo-out/demo.flow.h5)"""
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from mexkit.torch import StoreDataset, splits

data = StoreDataset(sys.argv[1], input="mean_regions")  # MEAN's 3 x 42 x 42 flow regions
epochs, correct = int(sys.argv[2]) if len(sys.argv) > 2 else 30, 0
for fold in splits(data, protocol="loso"):                # mexkit train's LOSO folds
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                        nn.Flatten(), nn.Linear(128, len(data.classes)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    train = DataLoader(Subset(data, fold.train), batch_size=8, shuffle=True, num_workers=2,
                       persistent_workers=True)          # each worker opens the store itself
    for _ in range(epochs):
        for x, y in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    with torch.no_grad():
        for x, y in DataLoader(Subset(data, fold.test), batch_size=64, num_workers=2):
            correct += int((net(x).argmax(1) == y).sum())
print(f"{len(data)} samples, classes {data.classes}: LOSO accuracy {correct / len(data):.3f}")
