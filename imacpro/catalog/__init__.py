"""The iMac Pro catalog: the spec sheet as data, and validated configurations."""

from imacpro.catalog.configuration import Configuration, base_configuration, configure

__all__ = ["Configuration", "base_configuration", "configure"]
