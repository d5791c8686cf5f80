"""`enstack pretrain`: masked-language pretraining of an encoder on C/C++ source."""
