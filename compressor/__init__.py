"""Head scoring, pruning plans, structural pruning and attribution trees for BERT-family classifiers."""
