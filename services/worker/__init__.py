"""The worker: consumes job commands, streams each through a provider into ``tokenrelay.tokens``."""
