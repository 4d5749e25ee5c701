package starter_test

func stopWorker() {}
