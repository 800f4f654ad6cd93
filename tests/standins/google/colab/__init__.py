"""A stand-in for Colab's ``google.colab`` (tests only): ``drive.mount`` records its calls and ``userdata.get`` reads
the secrets a test put in ``secrets.json`` beside this package, raising Colab's errors as Colab does."""
