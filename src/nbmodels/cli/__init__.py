"""The ``nbmodels`` command. Never imports IPython."""
