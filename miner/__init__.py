"""The miner's side that is not the neuron loop: the inference server validators verify."""
