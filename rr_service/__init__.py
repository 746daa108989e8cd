"""calico-routereflector: turns a Debian host running BIRD into a Calico route reflector."""

__version__ = "0.1.0"
