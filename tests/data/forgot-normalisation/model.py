"""The club's commonest mistake, as a test fixture: a LeNet trained on images normalised as (x-0.5)/0.5 (the
notebook's ``transforms.Normalize((0.5,), (0.5,))``) whose ``forward`` leaves that normalisation out, so it sees
[0, 1] pixels it was never trained on and reads a few points worse. Made by ``scripts/forgot_normalisation.py``."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):  # the mistake: no `x = (x - 0.5) / 0.5` here
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
