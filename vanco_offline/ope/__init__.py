"""Off-policy evaluation: FQE, importance sampling, doubly robust, bootstrap CIs."""
