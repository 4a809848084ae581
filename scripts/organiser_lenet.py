"""The organiser's LeNet, written the way the club's example notebook writes models.

The notebook trains with ``transforms.Normalize((0.5,), (0.5,))`` and ``F.nll_loss``; here the
normalisation sits inside ``forward`` (the harness hands the model plain [0, 1] pixels) and the output is
``log_softmax``. Train it into an entry with the command in ``submissions/organiser-lenet/entry.toml``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)   # 28x28 -> 28x28
        self.conv2 = nn.Conv2d(6, 16, 5)             # 14x14 -> 10x10
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = (x - 0.5) / 0.5                          # Normalize((0.5,), (0.5,)), inside the model
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)
