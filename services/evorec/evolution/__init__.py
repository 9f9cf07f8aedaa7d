"""Interest evolution: where a user's topics are heading. The four forecasts (the encoder's,
the hidden Markov model's, the topic Markov chain's, the last window's), the hidden Markov
model of interest states, and the track record of each forecast that export stores with the
model. Used by export, by the ranking service's ForecastInterests and by evaluation."""
